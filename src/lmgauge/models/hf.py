"""The transformers backend: a local model folder or .gguf file, run in this process."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from lmgauge import engine
from lmgauge.models import last_layer
from lmgauge.models import prefix_attention as prefix_attention_mod
from lmgauge.models.base import ModelError, OnResult
from lmgauge.models.device_map import device_map_for_visible_gpus
from lmgauge.models.hf_loading import dequantized_gguf_folder, pick_device, split_model_path, torch_dtype
from lmgauge.models.tokenizer import BOS_POLICIES, DEFAULT_CONTEXT_LENGTH, ModelTokenizer, context_length
from lmgauge.requests import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    TokenStats,
)

log = logging.getLogger(__name__)

# Caps on the memory-derived budget: on a CPU larger batches buy nothing but padding; on a GPU
# past this the throughput is flat and a long first batch only delays the first results.
CPU_TOKEN_BUDGET_CAP = 8192
GPU_TOKEN_BUDGET_CAP = 131072
MEMORY_SHARE = 0.3  # of the free memory a batch may take
SCORE_CHUNK = 512  # scored positions projected to the vocabulary at once (~100 MB of fp32 logits at 49k)


def _free_memory_bytes(device: str) -> int | None:
    import torch

    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_token_budget(config, device: str, dtype_bytes: int, width: int = 2048) -> int:
    """Padded tokens per forward that fit in a share of free memory, from the model's shapes:
    per token, the layer activations, a copy of the shared prefix's KV cache, and one row of
    attention scores over `width` keys (the eager/math attention path materializes them)."""
    hidden = getattr(config, "hidden_size", 4096)
    inter = getattr(config, "intermediate_size", 4 * hidden)
    layers = getattr(config, "num_hidden_layers", 32)
    heads = getattr(config, "num_attention_heads", 32)
    kv_heads = getattr(config, "num_key_value_heads", heads) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    per_token = dtype_bytes * (6 * hidden + 3 * inter + 2 * layers * kv_heads * head_dim + heads * width)
    cap = GPU_TOKEN_BUDGET_CAP if device.startswith("cuda") else CPU_TOKEN_BUDGET_CAP
    free = _free_memory_bytes(device)
    if free is None:
        return min(cap, 4096)
    return max(256, min(cap, int(free * MEMORY_SHARE / per_token)))


PREFIX_ATTENTION_WAYS = ("auto", "packed", "cascade", "copies")
DECODE_WAYS = ("auto", "slots", "batches")


class HFModel:
    """Answers request kinds through `lmgauge.engine`; owns only loading and raw forwards."""

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        tokenizer_path: str | None = None,
        gguf_file: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        bos: str = "never",
        max_seq_len: int | None = None,
        batch_size: int | None = None,
        token_budget: int | None = None,
        prefix_reuse: bool = True,
        prefix_attention: str = "auto",
        decode_way: str = "auto",
        chat_template: bool = False,
        model_kwargs: dict | None = None,
        tokenizer_kwargs: dict | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        if bos not in BOS_POLICIES:  # before minutes of loading
            raise ModelError(f"bos policy {bos!r} is not one of {', '.join(BOS_POLICIES)}")
        if prefix_attention not in PREFIX_ATTENTION_WAYS:
            raise ModelError(f"prefix_attention {prefix_attention!r} is not one of {', '.join(PREFIX_ATTENTION_WAYS)}")
        if decode_way not in DECODE_WAYS:
            raise ModelError(f"decode_way {decode_way!r} is not one of {', '.join(DECODE_WAYS)}")
        t0 = time.perf_counter()
        folder, gguf = split_model_path(path, gguf_file)
        self.source = str(Path(path).expanduser())
        self.device = pick_device(device)
        if gguf:
            folder = dequantized_gguf_folder(folder, gguf, "float32" if dtype == "auto" else dtype)
        self.tokens = ModelTokenizer.load(
            str(tokenizer_path or folder),
            bos=bos,
            trust_remote_code=trust_remote_code,
            tokenizer_kwargs=tokenizer_kwargs,
        )
        self.tokenizer = self.tokens.tokenizer  # the transformers object (chat templates, the stand-in server)
        model_kwargs = dict(model_kwargs or {})
        if self.device == "cuda" and "device_map" not in model_kwargs:
            # a worker holding N > 1 devices (run_cfg.num_gpus) splits the model over all of them
            split = device_map_for_visible_gpus(str(folder), torch_dtype(dtype, self.device), trust_remote_code)
            if split is not None:
                model_kwargs["device_map"] = split
                self.device = "cuda:0"  # inputs enter at the embeddings
        try:
            # Any: transformers' annotations type the model's `.to` as an unbound function
            self.model: Any = cast(
                Any,
                AutoModelForCausalLM.from_pretrained(
                    folder,
                    dtype=torch_dtype(dtype, self.device),
                    trust_remote_code=trust_remote_code,
                    **model_kwargs,
                ),
            )
        except OSError as e:
            raise ModelError(f"could not load model from {str(folder)!r}: {e}") from e
        if "device_map" not in model_kwargs:  # a device map has placed every layer already
            self.model.to(self.device)
        self.model.eval()
        self.device_map = model_kwargs.get("device_map")
        self.name = name or Path(path).stem
        self.load_seconds = time.perf_counter() - t0

        tok = self.tokens
        self.eos_token_id, self.prefix_token_id, self.bos_ids = tok.eos_token_id, tok.prefix_token_id, tok.bos_ids
        self.bos_policy = bos
        self.max_length = int(
            max_seq_len or context_length(self.model.config, self.tokenizer) or DEFAULT_CONTEXT_LENGTH
        )
        tok.max_length = self.max_length
        self.batch_size = batch_size
        self.prefix_reuse = prefix_reuse  # off: every row forwarded whole (the plain path, for checking)
        self.prefix_attention = self._prefix_attention_way(prefix_attention)
        self.decode_way = self._decode_way(decode_way)
        self.chat_template = chat_template  # generation prompts go through the tokenizer's chat template
        self.token_budget = int(
            token_budget or auto_token_budget(self.model.config, self.device, self.model.dtype.itemsize)
        )
        self._stats = TokenStats()
        self._decoder = self.model.get_decoder()
        self._head = self.model.get_output_embeddings()
        cfg = self.model.config
        self._softcap = getattr(cfg, "final_logit_softcapping", None)
        self._logit_scale = getattr(cfg, "logit_scale", None)
        self._torch = torch
        # the scoring forwards run the last layer only where a token is read (models/last_layer.py):
        # exact for the architectures the cascade supports; a model split over devices keeps its
        # own forward (accelerate moves inputs at each layer's boundary, not inside it)
        self._prunes_last_layer = prefix_attention_mod.supports_cascade(self.model) and not self.device_map
        # transformers >= 5.2x names the KV cache argument `cache`; older releases `past_key_values`
        self._cache_arg = (
            "cache" if "cache" in inspect.signature(self._decoder.forward).parameters else "past_key_values"
        )

    # --- TokenModel, for the engine -------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokens.encode(text)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokens.encode_many(texts)

    def encode_document(self, text: str) -> list[int]:
        return self.tokens.encode_document(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokens.decode(ids)

    def _logits(self, hidden):
        logits = self._head(hidden)
        if self._logit_scale:
            logits = logits * self._logit_scale
        if self._softcap:
            logits = self._torch.tanh(logits / self._softcap) * self._softcap
        return logits.float()

    def _right_padded(self, rows):
        """(ids, mask) of rows padded on the right; a causal model never looks at the padding."""
        torch = self._torch
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)] = torch.tensor(r)
            mask[k, : len(r)] = 1
        return ids, mask

    def score_rows(self, rows, targets):
        torch = self._torch
        ids, mask = self._right_padded(rows)
        with torch.inference_mode():
            hidden = self._decoder(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False
            ).last_hidden_state
        return self._score_hidden(hidden, targets)

    def _score_hidden(self, hidden, targets):
        """Log-probabilities of target tokens, projecting to the vocabulary only where one is scored,
        each position once (the four answer letters of an MMLU question are read at one position),
        SCORE_CHUNK positions at a time: a whole text's every position at once would hold
        positions x vocabulary floats twice (logits, log_softmax), 1 GB for 2,600 positions."""
        torch = self._torch
        where: dict[tuple[int, int], int] = {}  # (row, position) -> its index among the projected
        at_position = [where.setdefault((k, p), len(where)) for k, t in enumerate(targets) for p, _ in t]
        tok_all = [tok for t in targets for _, tok in t]
        by_chunk: list[list[int]] = [[] for _ in range(0, len(where), SCORE_CHUNK)]
        for i, u in enumerate(at_position):
            by_chunk[u // SCORE_CHUNK].append(i)
        picked = [0.0] * len(tok_all)
        greedy = [False] * len(tok_all)
        with torch.inference_mode():
            # on the hidden states' device: with a model split over devices, the last layer's
            row_idx = torch.tensor([k for k, _ in where], device=hidden.device)
            pos_idx = torch.tensor([p for _, p in where], device=hidden.device)
            for c, members in enumerate(by_chunk):
                sl = slice(c * SCORE_CHUNK, (c + 1) * SCORE_CHUNK)
                logprobs = torch.log_softmax(self._logits(hidden[row_idx[sl], pos_idx[sl]]), dim=-1)
                local = torch.tensor([at_position[i] - c * SCORE_CHUNK for i in members], device=logprobs.device)
                tok_idx = torch.tensor([tok_all[i] for i in members], device=logprobs.device)
                values = logprobs[local, tok_idx].tolist()
                top = (logprobs.argmax(-1)[local] == tok_idx).tolist()
                for i, v, g in zip(members, values, top):
                    picked[i], greedy[i] = v, g
        out, at = [], 0
        for t in targets:
            out.append(list(zip(picked[at : at + len(t)], greedy[at : at + len(t)])))
            at += len(t)
        return out

    def _prefix_attention_way(self, asked: str) -> str:
        """How suffix rows see a shared prefix (models/prefix_attention.py): "packed" puts a batch's
        suffixes in one row after the one stored prefix KV (no copies, no padding), "cascade"
        attends padded rows to that one KV, "copies" expands it to a cache per row (any architecture).

        "auto" is packed where it is exact (the cascade's architectures), else copies: on the real
        MMLU 5-shot suffix batches (benchmarks/prefix_attention_bench.py) packed costs less CPU time
        than copies and computes no padding; the cascade costs 1.14x copies (its attention is
        unfused matmuls).
        """
        if asked in ("cascade", "packed", "auto") and not prefix_attention_mod.supports_cascade(self.model):
            if asked == "auto":
                return "copies"
            archs = getattr(self.model.config, "architectures", None) or [type(self.model).__name__]
            raise ModelError(
                f"prefix_attention {asked!r} is exact only for {', '.join(sorted(prefix_attention_mod.CASCADE_ARCHITECTURES))} "
                f"without sliding windows or logit softcapping; this model is {', '.join(archs)}"
            )
        return "packed" if asked == "auto" else asked

    @property
    def packs_suffixes(self) -> bool:
        """Suffix batches are one packed row: the engine budgets them by their summed length."""
        return self.prefix_attention == "packed"

    def _decode_way(self, asked: str) -> str:
        """How generation decodes: "slots" (models/slot_decoding.py: the shared prefix's KV held
        once, continuous refill) where the attention is one the cascade reproduces exactly, else
        "batches" (a cache per batch, the prefix copied per row). "auto" is slots where supported."""
        supported = prefix_attention_mod.supports_cascade(self.model)
        if asked == "slots" and not supported:
            archs = getattr(self.model.config, "architectures", None) or [type(self.model).__name__]
            raise ModelError(
                f"decode_way 'slots' is exact only for {', '.join(sorted(prefix_attention_mod.CASCADE_ARCHITECTURES))} "
                f"without sliding windows or logit softcapping; this model is {', '.join(archs)}"
            )
        return "slots" if asked == "slots" or (asked == "auto" and supported) else "batches"

    def slot_pool(self, state, prefix_len: int, slots: int, capacity: int):
        """Slots for rows continuing the prefix in `state` (None: no prefix), models/slot_decoding.py."""
        from lmgauge.models.slot_decoding import SlotPool

        def to_logits(hidden):
            with self._torch.inference_mode():
                return self._logits(hidden).cpu()

        return SlotPool(self.model, self._decoder, to_logits, state, prefix_len, slots, capacity, self.device)

    def prefix_state(self, prefix: Sequence[int]):
        """KV cache of one shared prefix (batch of 1)."""
        return self.score_prefix(prefix, [])[0]

    def score_prefix(self, prefix: Sequence[int], targets: Sequence[tuple[int, int]]):
        """prefix_state, and the (position, token) targets inside the prefix scored by the same
        forward: (state, [(logprob, is_greedy)])."""
        torch = self._torch
        ids = torch.tensor([list(prefix)], device=self.device)
        keep, kept_targets = last_layer.kept_positions(targets)
        if self._prunes_last_layer and last_layer.prunes(keep, len(prefix)):
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            positions = torch.arange(len(prefix), device=self.device).unsqueeze(0)
            with torch.inference_mode():
                hidden = last_layer.forward_keeping(
                    self._decoder, ids, positions, keep, cache=cache, cache_arg=self._cache_arg
                )
            return cache, self._score_hidden(hidden, [kept_targets])[0] if targets else []
        with torch.inference_mode():
            out = self._decoder(input_ids=ids, use_cache=True)
        scores = self._score_hidden(out.last_hidden_state, [list(targets)])[0] if targets else []
        return self._cache_of(out), scores

    def _cache_of(self, out):
        return out.cache if self._cache_arg == "cache" else out.past_key_values

    def score_rows_after_prefix(self, state, prefix_len: int, rows, targets):
        """score_rows for rows that all continue the prefix held in `state`; target positions are
        relative to the suffix start."""
        torch = self._torch
        if self.prefix_attention == "packed":
            return self._score_packed_after_prefix(state, prefix_len, rows, targets)
        ids, own = self._right_padded(rows)
        n, width = ids.shape
        positions = torch.arange(prefix_len, prefix_len + width).unsqueeze(0).expand(n, -1).to(self.device)
        if self.prefix_attention == "cascade":
            # no cache, no mask: the cascade attends to the prefix's one stored KV and is causal
            # within each row, which right padding needs nothing more for
            with torch.inference_mode(), prefix_attention_mod.cascade_on(self.model):
                hidden = self._decoder(
                    input_ids=ids.to(self.device),
                    position_ids=positions,
                    use_cache=False,
                    **{prefix_attention_mod.PREFIX_KWARG: prefix_attention_mod.prefix_kv(state)},
                ).last_hidden_state
            return self._score_hidden(hidden, targets)
        mask = torch.cat([torch.ones((n, prefix_len), dtype=own.dtype), own], dim=-1)
        cache = self.expand_state(state, n)
        with torch.inference_mode():
            hidden = self._decoder(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions,
                use_cache=True,
                **{self._cache_arg: cache},
            ).last_hidden_state
        return self._score_hidden(hidden, targets)

    def _score_packed_after_prefix(self, state, prefix_len: int, rows, targets):
        """All rows in one packed row after the prefix, each with its own positions; targets are
        read back at each row's offset in the packed row."""
        torch = self._torch
        pa = prefix_attention_mod
        lengths = [len(r) for r in rows]
        starts = [0]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        ids = torch.tensor([[tok for r in rows for tok in r]], device=self.device)
        positions = torch.tensor([[prefix_len + i for n in lengths for i in range(n)]], device=self.device)
        kv = pa.prefix_kv(state)
        packed = pa.PackedSuffixes(kv, pa.suffix_chunks(lengths, kv[0][0].dtype, self.device))
        wanted = [(at + p, tok) for at, t in zip(starts, targets) for p, tok in t]
        keep, kept_wanted = last_layer.kept_positions(wanted)
        with torch.inference_mode(), pa.attention_on(self.model, pa.PACKED):
            if self._prunes_last_layer and last_layer.prunes(keep, sum(lengths)):
                hidden = last_layer.forward_keeping(self._decoder, ids, positions, keep, lengths=lengths, packed=packed)
                wanted = kept_wanted
            else:
                hidden = self._decoder(
                    input_ids=ids, position_ids=positions, use_cache=False, **{pa.PACKED_KWARG: packed}
                ).last_hidden_state
        flat = self._score_hidden(hidden, [wanted])[0]
        out, at = [], 0
        for t in targets:
            out.append(flat[at : at + len(t)])
            at += len(t)
        return out

    def expand_state(self, state, n: int, room: int = 0):
        """A fresh cache holding the prefix in `state` (None: nothing) for n rows. With `room`
        (tokens the rows will add: decoding), the cache is allocated for them up front and each
        step writes in place (models/kv_cache.py); else views of the prefix until the first update."""
        from transformers import DynamicCache

        from lmgauge.models.kv_cache import roomy_cache

        if room > 0:
            roomy = roomy_cache(self.model.config, state, n, room)
            if roomy is not None:
                return roomy
        if state is None:
            return None
        layers = [(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1)) for layer in state.layers]
        return DynamicCache(ddp_cache_data=layers, config=self.model.config)

    def select_rows(self, cache, rows: list[int]):
        cache.batch_select_indices(self._torch.tensor(rows, device=self.device))
        return cache

    def decode_step(self, input_ids, attention_mask, position_ids, cache):
        torch = self._torch
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_arg: cache},
            )
        return out.logits[:, -1, :].float().cpu(), self._cache_of(out)

    # --- LanguageModel --------------------------------------------------------------------------

    @property
    def stats(self) -> TokenStats:
        return self._stats

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], on_result: OnResult | None = None
    ) -> list[LoglikelihoodResult]:
        return engine.score_loglikelihood(self, requests, on_result, self._stats)

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], on_result: OnResult | None = None
    ) -> list[RollingResult]:
        return engine.score_rolling(self, requests, on_result, self._stats)

    def generate(self, requests: Sequence[GenerateRequest], on_result: OnResult | None = None) -> list[GenerateResult]:
        rendered = [self._rendered_prompt(r) for r in requests]
        prepared = [replace(r, prompt=p) for r, p in zip(requests, rendered)]

        def with_prompt(i: int, result: GenerateResult) -> GenerateResult:
            return replace(result, prompt=rendered[i]) if rendered[i] != requests[i].prompt else result

        def forward(i: int, result: GenerateResult) -> None:
            if on_result is not None:
                on_result(i, with_prompt(i, result))

        results = engine.generate_until(self, prepared, forward, self._stats)
        return [with_prompt(i, r) for i, r in enumerate(results)]

    def _rendered_prompt(self, request: GenerateRequest) -> str:
        """The request's text, or its chat turns through the tokenizer's chat template."""
        use_chat = request.chat if request.chat is not None else self.chat_template
        if not use_chat:
            return request.prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(
                f"{self.name}: chat template asked for, but the tokenizer has none (set chat_template: false)"
            )
        turns = request.messages or (("user", request.prompt),)
        return self.tokenizer.apply_chat_template(
            [{"role": role, "content": content} for role, content in turns], tokenize=False, add_generation_prompt=True
        )

    def describe(self) -> dict:
        return {
            "backend": "hf",
            "name": self.name,
            "path": self.source,
            "class": type(self.model).__name__,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": self.device,
            "max_length": self.max_length,
            "bos": self.bos_policy,
            "chat_template": self.chat_template,
            "batch_size": self.batch_size,
            "token_budget": self.token_budget,
            "prefix_reuse": self.prefix_reuse,
            "prefix_attention": self.prefix_attention,
            "decode_way": self.decode_way,
            **({"device_map": self.device_map} if self.device_map else {}),
            "load_seconds": round(self.load_seconds, 3),
        }
