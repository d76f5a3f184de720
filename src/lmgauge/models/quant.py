"""Fake quantization (quantize, then dequantize) of an hf model's Linear layers, round to nearest.

The formulas are llmc's (ModelTC/llmc, llmc/compression/quantization/quant.py, `IntegerQuantizer`
with calib_algo "minmax" and round_zp), so a perplexity measured here equals llmc's RTN number:

- range: per row of the (reshaped) tensor, `min = t.amin(-1)`, `max = t.amax(-1)` (per_tensor: of
  the whole tensor). llmc does not widen the range to include 0 (GPTQ's quantizer does).
- asymmetric: qmin = 0, qmax = 2^b - 1; `scale = (max - min).clamp(1e-5) / (qmax - qmin)`,
  `zero = (qmin - round(min / scale)).clamp(qmin, qmax)`.
- symmetric: qmin = -2^(b-1), qmax = 2^(b-1) - 1; `scale = max(|max|, |min|).clamp(1e-5) / qmax`,
  zero = 0.
- `q = clamp(round(t / scale) + zero, qmin, qmax)`, `t' = (q - zero) * scale`.
- weights [out, in]: per_channel = one row per output channel; per_group = the row cut into
  consecutive groups of `group_size` along the input dimension (`reshape(-1, group_size)`);
  per_tensor = one range. Activations [..., hidden]: per_token = one range per token (dynamic,
  computed on every forward), per_tensor = one range per forward.

16 bits means "not quantized": the tensor is returned as it is (llmc's convention for a float
position, e.g. `act: {bit: 16}`), so a w16 scheme is an exact identity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

WEIGHT_GRANULARITIES = ("per_channel", "per_group", "per_tensor")
ACT_GRANULARITIES = ("per_token", "per_tensor")
FLOAT_BITS = 16


class QuantError(ValueError):
    """A quantization setting that cannot apply to this model; the message names the layer or key."""


@dataclass(frozen=True)
class QuantSpec:
    """How one kind of tensor (weights or activations) is quantized."""

    bit: int
    symmetric: bool = False
    granularity: str = "per_channel"
    group_size: int | None = None

    def __post_init__(self) -> None:
        if self.bit != FLOAT_BITS and not 2 <= self.bit <= 8:
            raise QuantError(f"bit {self.bit}: integer fake-quant takes 2..8 bits (16: not quantized)")
        allowed = WEIGHT_GRANULARITIES + ACT_GRANULARITIES
        if self.granularity not in allowed:
            raise QuantError(f"granularity {self.granularity!r} is not one of {', '.join(allowed)}")
        if self.granularity == "per_group" and (self.group_size is None or self.group_size < 1):
            raise QuantError(f"granularity per_group needs a positive group_size, got {self.group_size}")

    @property
    def is_float(self) -> bool:
        return self.bit == FLOAT_BITS

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bit - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bit - 1) - 1 if self.symmetric else 2**self.bit - 1

    def label(self) -> str:
        if self.is_float:
            return "16"
        g = f"g{self.group_size}" if self.granularity == "per_group" else self.granularity
        return f"{self.bit}{'sym' if self.symmetric else 'asym'}-{g}"


def quant_dequant_rows(t: Any, spec: QuantSpec) -> Any:
    """llmc's minmax quantize-dequantize of a tensor whose last dimension holds one range each
    (per_tensor: the whole tensor); computed in float32, returned in float32."""
    import torch

    x = t.float()
    if spec.granularity == "per_tensor":
        lo, hi = x.min(), x.max()
    else:
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    qmin, qmax = float(spec.qmin), float(spec.qmax)
    if spec.symmetric:
        scale = torch.maximum(hi.abs(), lo.abs()).clamp(min=1e-5) / qmax
        zero = torch.zeros_like(scale)
    else:
        scale = (hi - lo).clamp(min=1e-5) / (qmax - qmin)
        zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    q = torch.clamp(torch.round(x / scale) + zero, qmin, qmax)
    return (q - zero) * scale


def fake_quant_weight(weight: Any, spec: QuantSpec, layer: str = "weight") -> Any:
    """A Linear weight [out, in] quantized and dequantized, in its own dtype."""
    if spec.is_float:
        return weight
    if weight.dim() != 2:
        raise QuantError(f"{layer}: a weight of shape {tuple(weight.shape)} is not a Linear weight [out, in]")
    if spec.granularity == "per_token":
        raise QuantError("weight granularity per_token does not exist: use per_channel, per_group or per_tensor")
    if spec.granularity == "per_group":
        width = weight.shape[1]
        g = int(spec.group_size or 0)
        if width % g:
            raise QuantError(f"{layer}: group_size {g} does not divide its input width {width}")
        rows = weight.reshape(-1, g)
    else:
        rows = weight
    return quant_dequant_rows(rows, spec).reshape(weight.shape).to(weight.dtype)


def fake_quant_act(x: Any, spec: QuantSpec) -> Any:
    """Dynamic activation fake-quant: a range per token (per_token) or per forward (per_tensor)."""
    if spec.is_float:
        return x
    if spec.granularity not in ACT_GRANULARITIES:
        raise QuantError(f"activation granularity {spec.granularity!r} is not one of {', '.join(ACT_GRANULARITIES)}")
    return quant_dequant_rows(x, spec).to(x.dtype)


@dataclass(frozen=True)
class QuantScheme:
    """Weight-only (act None) or weight + activation fake-quant; `skip` names layers left float:
    a Linear is skipped when its qualified name equals an entry or ends with "." + entry."""

    weight: QuantSpec
    act: QuantSpec | None = None
    skip: tuple[str, ...] = ("lm_head",)

    def label(self) -> str:
        w = f"w{self.weight.label()}"
        return w if self.act is None or self.act.is_float else f"{w}-a{self.act.label()}"

    def skips(self, name: str) -> bool:
        return any(name == s or name.endswith("." + s) for s in self.skip)


@dataclass
class FakeQuantized:
    """A model whose Linear weights were replaced in place by their fake-quantized values.

    The float weights are kept (the same tensors, not copies) when `keep_float` was asked, so a
    fidelity pass can run the float model over the same window without loading it again:
    `with fq.float_weights(): ...`.
    """

    model: Any
    scheme: QuantScheme
    layers: list[str]
    skipped: list[str]
    _float: dict[str, Any] = field(default_factory=dict, repr=False)
    _quant: dict[str, Any] = field(default_factory=dict, repr=False)
    _hooks: list[Any] = field(default_factory=list, repr=False)
    _act_on: list[bool] = field(default_factory=lambda: [True], repr=False)

    @property
    def keeps_float(self) -> bool:
        return bool(self._float)

    @contextlib.contextmanager
    def float_weights(self) -> Iterator[None]:
        """The float model for the duration of the block: original weights, no activation quant."""
        if not self._float and self.layers:
            raise RuntimeError("the float weights were not kept (quantize_model(..., keep_float=True))")
        modules = dict(self.model.named_modules())
        for name, w in self._float.items():
            modules[name].weight.data = w
        self._act_on[0] = False
        try:
            yield
        finally:
            for name, w in self._quant.items():
                modules[name].weight.data = w
            self._act_on[0] = True

    def restore(self) -> None:
        """Put the float weights back for good and remove the activation quant: the model is as it was."""
        if not self._float and self.layers:
            raise RuntimeError("the float weights were not kept (quantize_model(..., keep_float=True))")
        modules = dict(self.model.named_modules())
        for name, w in self._float.items():
            modules[name].weight.data = w
        self.remove_act_quant()
        self._quant = dict(self._float)
        self._float.clear()

    def release_float(self) -> None:
        """Drop the kept float weights (their memory) once no fidelity pass needs them."""
        self._float.clear()

    def remove_act_quant(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def describe(self) -> dict:
        return {
            "method": "RTN",
            "scheme": self.scheme.label(),
            "weight": vars(self.scheme.weight),
            "act": vars(self.scheme.act) if self.scheme.act else None,
            "layers_quantized": len(self.layers),
            "layers_skipped": self.skipped,
            "kind": "fake-quant",
        }


def _tied_to_input_embeddings(model: Any, module: Any) -> bool:
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    return emb is not None and getattr(emb, "weight", None) is module.weight


def plan_layers(model: Any, scheme: QuantScheme) -> tuple[list[tuple[str, Any]], list[str]]:
    """(Linear layers to quantize, names skipped); raises QuantError naming the first layer the
    scheme cannot apply to (a group size that does not divide its width, a tied embedding)."""
    import torch

    targets, skipped = [], []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if scheme.skips(name):
            skipped.append(name)
            continue
        if _tied_to_input_embeddings(model, module):
            raise QuantError(
                f"{name}: its weight is the input embedding's (tie_word_embeddings); quantizing it would "
                f"quantize the embeddings too: keep {name!r} in skip"
            )
        w = module.weight
        if scheme.weight.granularity == "per_group" and w.shape[1] % int(scheme.weight.group_size or 0):
            raise QuantError(
                f"{name}: group_size {scheme.weight.group_size} does not divide its input width {w.shape[1]}"
            )
        targets.append((name, module))
    if not targets:
        raise QuantError(f"no Linear layer left to quantize (skipped: {', '.join(skipped) or 'none'})")
    return targets, skipped


def quantize_model(model: Any, scheme: QuantScheme, keep_float: bool = False) -> FakeQuantized:
    """Fake-quantize every Linear of `model` not in `scheme.skip`, in place.

    Every layer is checked (group size divides its width, no tied embedding) before any weight
    changes, so a refused scheme leaves the model as it was.
    """
    import torch

    targets, skipped = plan_layers(model, scheme)
    fq = FakeQuantized(model, scheme, [n for n, _ in targets], skipped)
    with torch.no_grad():
        for name, module in targets:
            original = module.weight.data
            quantized = fake_quant_weight(original, scheme.weight, name)
            if keep_float:
                fq._float[name] = original
            fq._quant[name] = quantized
            module.weight.data = quantized
    act = scheme.act
    if act is not None and not act.is_float:
        on = fq._act_on

        def quantize_input(_module: Any, args: tuple) -> tuple | None:
            if not on[0]:
                return None
            return (fake_quant_act(args[0], act), *args[1:])

        fq._hooks = [m.register_forward_pre_hook(quantize_input) for _, m in targets]
    return fq


__all__ = [
    "FakeQuantized",
    "QuantError",
    "QuantScheme",
    "QuantSpec",
    "fake_quant_act",
    "fake_quant_weight",
    "plan_layers",
    "quant_dequant_rows",
    "quantize_model",
]
