"""What the engine needs from an in-process model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class TokenModel(Protocol):
    max_length: int  # longest sequence one forward may take
    prefix_token_id: int  # stands in for an empty context (BOS, else EOS), as lm-eval does
    eos_token_id: int | None
    bos_ids: list[int]  # prepended to every context ([] unless the BOS policy adds one)
    batch_size: int | None  # rows per forward; None: only the token budget limits
    token_budget: int  # padded tokens per forward

    def encode(self, text: str) -> list[int]:
        """Token ids of text, no special tokens."""
        ...

    # (optional) encode_many(texts) -> [encode(t) for t in texts], in one batch

    def encode_document(self, text: str) -> list[int]:
        """Token ids of text with the tokenizer's own special tokens (as `tokenizer(text)`)."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def score_rows(
        self, rows: Sequence[Sequence[int]], targets: Sequence[Sequence[tuple[int, int]]]
    ) -> list[list[tuple[float, bool]]]:
        """One forward over right-padded rows; for each (position, token) target of a row, the
        log-probability of that token given row[:position+1], and whether it is the argmax."""
        ...

    prefix_reuse: bool  # share the KV cache of common prompt prefixes
    # (optional) packs_suffixes: score_rows_after_prefix computes its rows packed, without padding,
    # so a batch is budgeted by the rows' summed length

    def prefix_state(self, prefix: Sequence[int]) -> Any:
        """KV cache of one token prefix."""
        ...

    def score_rows_after_prefix(
        self, state: Any, prefix_len: int, rows: Sequence[Sequence[int]], targets: Sequence[Sequence[tuple[int, int]]]
    ) -> list[list[tuple[float, bool]]]:
        """score_rows for rows continuing the prefix in `state`; positions relative to the suffix."""
        ...

    def expand_state(self, state: Any, n: int, room: int = 0) -> Any:
        """A cache with the prefix in `state` (None: empty) for n rows, with room for `room` more
        tokens per row (decoding); None lets the first forward make its own."""
        ...

    def select_rows(self, cache: Any, rows: list[int]) -> Any:
        """Keep only these batch rows of a cache."""
        ...

    def decode_step(self, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> tuple[Any, Any]:
        """Forward new tokens over a KV cache; returns (logits at the last position, cache)."""
        ...

    decode_way: str  # "slots": slot_pool below; "batches": expand_state / decode_step batches

    def slot_pool(self, state: Any, prefix_len: int, slots: int, capacity: int) -> SlotPool:
        """Slots of `capacity` own tokens each for rows continuing the prefix in `state` (None: none)."""
        ...


class SlotPool(Protocol):
    """Live rows in slots 0..live-1, beside one shared prefix held once (models/slot_decoding.py)."""

    @property
    def live(self) -> int: ...

    def free(self) -> int: ...

    def prefill(self, rows: Sequence[Sequence[int]]) -> Any:
        """Admit rows (their own tokens) into the next free slots; logits at each row's last token."""
        ...

    def step(self, tokens: Sequence[int]) -> Any:
        """One token for every live row, in slot order; the logits after it."""
        ...

    def remove(self, row: int) -> None:
        """Row `row` leaves; the last live row moves into its slot."""
        ...
