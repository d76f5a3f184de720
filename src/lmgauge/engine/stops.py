"""Stop strings during decoding, checked on a decoded tail window rather than the whole text.

Decoding a row's whole text at every step costs O(tokens) per step, O(tokens^2) per row. A stop
string that first appears at a step must end in the text the newest token added (or changed: a
multi-byte character completed), so it lies within the last `len(stop in UTF-8 bytes)` + a few
tokens: every token decodes to at least one byte. The window decodes those tokens plus a margin,
enough for what decoding a window differently at its start (a dropped leading space, a split
character) could hide. A hit in the window is confirmed on the whole text (engine `cut_at_stop`),
which also cuts the result, so texts are byte-identical to checking the whole text every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

TAIL_MARGIN = 8  # tokens before the longest stop string's possible start


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopCheck:
    """Whether a row's tokens decode to a text holding one of its stop strings."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str]) -> None:
        self.decode = decode
        self.stops = [s for s in stops if s]
        self.window = max((len(s.encode("utf-8")) for s in self.stops), default=0) + TAIL_MARGIN

    def found(self, tokens: Sequence[int]) -> tuple[str, bool] | None:
        """(cut text, True) once a stop string is in the text; None while there is none."""
        if not self.stops:
            return None
        tail = self.decode(tokens[-self.window :])
        if not any(s in tail for s in self.stops):
            return None
        text, hit = cut_at_stop(self.decode(tokens), self.stops)
        return (text, hit) if hit else None
