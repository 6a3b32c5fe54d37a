"""The fake quantizer under study: PyTorch's affine fake quantization with a choice of rounding.

``fake_quantize`` holds the arithmetic; ``RoundingFakeQuantize`` is the eager-mode QAT
module (a ``torch.ao.quantization.FakeQuantize`` whose ``forward`` uses it) and
``make_qconfig`` builds the QConfig that ``prepare_qat`` needs.

The arithmetic follows PyTorch's kernel step for step so that ``nearest`` is bit-exact
with ``torch.fake_quantize_per_tensor_affine``: multiply by the float32 reciprocal of the
scale, round, add the zero point, clamp to ``[quant_min, quant_max]``, subtract the zero
point and multiply by the scale. The other rules differ only in the rounding step.

The scaled value ``x * (1/scale)`` carries round-off, so rounding it down or up directly
would move a value lying exactly on the quantization grid by a whole step (about one grid
point in seven for ``floor``). The directed rules therefore round to the nearest grid
index first and then step by one only where the dequantized grid value lies on the wrong
side of ``x``. That makes every rule idempotent on grid values and keeps ``floor``'s output
at most ``x`` (``ceil``'s at least ``x``), both within one step.

Non-finite inputs are passed through unchanged instead of being turned into a quantized
number (PyTorch maps NaN to ``quant_min * scale``): a NaN or infinity must reach the loss,
where the trainer reports a divergence.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.ao.quantization import (
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
)

from qatsweep.config import ROUNDING_MODES
from qatsweep.errors import ConfigError

__all__ = [
    "RoundingFakeQuantize",
    "activation_range",
    "fake_quantize",
    "fake_quantize_per_channel",
    "make_qconfig",
    "quiet_deprecation",
    "weight_range",
]


@contextmanager
def quiet_deprecation() -> Iterator[None]:
    """Silence torch.ao.quantization's notice that it is deprecated, and nothing else.

    The notice advises torchao, whose QAT has no rounding option; the user cannot act on
    it. Every other warning still reaches them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.ao\.quantization is deprecated", category=Warning
        )
        warnings.filterwarnings(
            "ignore", message=r".*reduce_range will be deprecated", category=UserWarning
        )
        yield


def activation_range(bits: int, reduce_range: bool = False) -> tuple[int, int]:
    """Unsigned activation range: ``0 .. 2**bits - 1``, or one bit less when reduced."""
    effective = bits - 1 if reduce_range else bits
    return 0, 2**effective - 1


def weight_range(bits: int) -> tuple[int, int]:
    """Signed weight range: ``-2**(bits-1) .. 2**(bits-1) - 1``."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDING_MODES:
        raise ConfigError(
            f"unknown rounding {rounding!r}; choose one of {', '.join(ROUNDING_MODES)}"
        )


_F32 = np.float32
#: Per-tensor observers whose qparams ``_per_tensor_qparams`` reproduces: both inherit
#: ``calculate_qparams`` from ``MinMaxObserver`` unchanged.
_PER_TENSOR_OBSERVERS = (MinMaxObserver, MovingAverageMinMaxObserver)
#: (qscheme, dtype) pairs it reproduces; the zero point of other symmetric dtypes differs.
_FAST_QPARAMS = {
    (torch.per_tensor_affine, torch.quint8),
    (torch.per_tensor_affine, torch.qint8),
    (torch.per_tensor_symmetric, torch.qint8),
}


def _f32_reciprocal(scale: float) -> float:
    """``1 / scale`` rounded to float32, as ``torch.reciprocal`` on a float32 tensor."""
    return float(_F32(1.0) / _F32(scale))


def _per_tensor_qparams(observer: Any, min_val: float, max_val: float) -> tuple[float, int]:
    """``observer.calculate_qparams()`` for a finite running range, in float32 scalars.

    The same steps as PyTorch's ``_calculate_qparams`` for the (qscheme, dtype) pairs of
    ``_FAST_QPARAMS``, on numpy float32 scalars instead of one-element tensors: each
    float32 operation rounds the same way, and a dozen tensor ops (with their host
    dispatch, several microseconds each) become nanosecond scalar arithmetic. The caller
    checks that ``min_val <= max_val``, where PyTorch would return defaults or raise.
    """
    quant_min, quant_max = observer.quant_min, observer.quant_max
    eps = _F32(observer.eps.item())
    min_val_neg = min(_F32(min_val), _F32(0.0))
    max_val_pos = max(_F32(max_val), _F32(0.0))
    if observer.qscheme == torch.per_tensor_symmetric:
        max_val_pos = max(-min_val_neg, max_val_pos)
        scale = max(max_val_pos / _F32((quant_max - quant_min) / 2), eps)
        return float(scale), 0
    scale = max((max_val_pos - min_val_neg) / _F32(quant_max - quant_min), eps)
    # round() on a float is half to even, as torch.round; the quotient is a float32.
    zero_point = quant_min - round(float(min_val_neg / scale))
    return float(scale), min(max(zero_point, quant_min), quant_max)


def _round(
    scaled: torch.Tensor,
    x: torch.Tensor,
    scale: torch.Tensor | float,
    inv_scale: torch.Tensor | float,
    rounding: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Grid index (before the zero point) of ``x`` under ``rounding``; see the module doc.

    Consumes ``scaled``: the result is computed in its storage. Comparisons write their
    1.0 / 0.0 straight into a float tensor, mostly the storage of an operand no longer
    needed: the same numbers as ``(a > b).to(dtype)``, but PyTorch's CPU kernels that
    produce or multiply by bool tensors are several times slower (bench/RESULTS.md).
    """
    if rounding == "half_away":
        # A tie of the scaled value goes away from zero instead of to even: where the
        # nearest (even) index lies half a step toward zero from ``scaled``, step once more
        # away. The offset is exact (the index is within half a step), so this equals
        # ``where(tie, trunc + sign, nearest)`` without the CPU's slow trunc and where
        # kernels; NaN and infinities come out as from torch.round.
        nearest = torch.round(scaled)
        sign = torch.sign(scaled)
        offset = scaled.sub_(nearest).mul_(sign)
        toward = torch.eq(offset, 0.5, out=offset)
        return nearest.add_(toward.mul_(sign))

    # torch.round is round-half-to-even, as std::nearbyint in PyTorch's kernel.
    nearest = scaled.round_()
    if rounding == "nearest":
        return nearest

    grid = nearest * scale  # the dequantized value of the nearest index
    if rounding == "floor":
        return nearest.sub_(torch.gt(grid, x, out=grid))
    if rounding == "ceil":
        return nearest.add_(torch.lt(grid, x, out=grid))
    if rounding == "toward_zero":
        # ``grid`` has the sign of ``x`` or is zero, so ``|grid| > |x|`` is ``grid > x``
        # where x >= 0 (step down) and ``grid < x`` where x < 0 (step up), as before.
        magnitude = x.abs()
        beyond = torch.gt(grid.abs_(), magnitude, out=magnitude)
        return nearest.sub_(beyond.mul_(torch.sign(x)))
    if rounding == "stochastic":
        # Round up with probability equal to the distance above the floor grid value,
        # measured in steps: unbiased, and exact grid values never move.
        lower = nearest.sub_(torch.gt(grid, x, out=grid))
        fraction = (x - lower * scale).mul_(inv_scale)
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return lower.add_(torch.lt(noise, fraction, out=noise))
    raise ConfigError(f"unknown rounding {rounding!r}")  # guarded by _check_rounding


def _all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` holds no NaN or infinity, cheaply on the CPU; ``False`` (ask) elsewhere.

    aminmax propagates NaN and is vectorized, unlike isfinite; on an accelerator the
    caller's masked ``where`` costs no host round trip, so it is kept there.
    """
    if x.device.type != "cpu":
        return False
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x)
    return math.isfinite(low.item()) and math.isfinite(high.item())


class _RoundingFakeQuantFn(torch.autograd.Function):
    """Fake quantization with the straight-through estimator and PyTorch's mask.

    The arithmetic is written out in tensor ops rather than calling PyTorch's fused
    kernel: that kernel rounds one element at a time on the CPU and is about five times
    slower than these vectorized ops, which give the same bits.

    ``scale`` and ``zero_point`` are tensors (per tensor or along ``axis``) or, for a
    float32 ``x`` quantized per tensor, a float32-representable float and an int: plain
    numbers spare the reshapes and casts on the per-step path and give the same bits.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        scale: torch.Tensor | float,
        zero_point: torch.Tensor | int,
        quant_min: int,
        quant_max: int,
        rounding: str,
        generator: torch.Generator | None,
        axis: int | None,
        check_finite: bool,
    ) -> torch.Tensor:
        inv_scale: torch.Tensor | float
        if isinstance(scale, torch.Tensor):
            shape = [1] * x.dim()
            if axis is not None:
                shape[axis] = -1
            scale = scale.reshape(shape)
            if scale.dtype != x.dtype:
                scale = scale.to(x.dtype)
            assert isinstance(zero_point, torch.Tensor)
            zero_point = zero_point.reshape(shape).to(x.dtype)
            inv_scale = torch.reciprocal(scale)  # float32 reciprocal, as PyTorch's kernel
        else:
            inv_scale = _f32_reciprocal(scale)

        scaled = x * inv_scale
        q = _round(scaled, x, scale, inv_scale, rounding, generator).add_(zero_point)
        clamped = torch.clamp(q, quant_min, quant_max)
        # 1.0 inside the range, 0.0 outside it and for NaN or infinity; kept as a float
        # because multiplying the gradient by a bool mask is slow on the CPU.
        in_range = torch.eq(clamped, q, out=q)
        out = clamped.sub_(zero_point).mul_(scale)
        if check_finite and not _all_finite(x):
            out = torch.where(torch.isfinite(x), out, x)

        ctx.save_for_backward(in_range)
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (in_range,) = ctx.saved_tensors
        return (grad_output * in_range,) + (None,) * 8


def fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor | float,
    zero_point: torch.Tensor | int,
    quant_min: int,
    quant_max: int,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantize ``x`` to the affine grid of ``scale`` and ``zero_point``, then dequantize.

    Args:
        x: float tensor; NaN and infinities pass through unchanged.
        scale: positive per-tensor scale (a number or a one-element tensor).
        zero_point: integer zero point.
        quant_min, quant_max: the integer range, e.g. 0 and 255 for 8-bit activations.
        rounding: one of ``nearest`` (half to even, as PyTorch), ``floor``, ``ceil``,
            ``half_away``, ``toward_zero`` or ``stochastic``.
        generator: the random stream of ``stochastic`` rounding (seed it to reproduce).

    Returns:
        A tensor like ``x``. Its gradient is the straight-through estimator, zero where
        the rounded value fell outside ``[quant_min, quant_max]``.

    Raises:
        ConfigError: for an unknown ``rounding`` or an empty range.
    """
    _check_rounding(rounding)
    if quant_min > quant_max:
        raise ConfigError(f"quant_min {quant_min} exceeds quant_max {quant_max}")
    scale_t = torch.as_tensor(scale, dtype=torch.float32, device=x.device).reshape(1)
    zero_point_t = torch.as_tensor(zero_point, device=x.device).reshape(1)
    return _RoundingFakeQuantFn.apply(
        x, scale_t, zero_point_t, quant_min, quant_max, rounding, generator, None, True
    )


def fake_quantize_per_channel(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    axis: int,
    quant_min: int,
    quant_max: int,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``fake_quantize`` with one scale and zero point per slice of ``x`` along ``axis``."""
    _check_rounding(rounding)
    return _RoundingFakeQuantFn.apply(
        x, scale, zero_point, quant_min, quant_max, rounding, generator, axis, True
    )


class RoundingFakeQuantize(FakeQuantize):
    """Eager-mode QAT fake quantizer whose rounding rule is a parameter.

    In eval mode ``stochastic`` rounds to nearest: accuracy is that of a model whose
    values are rounded once, not of one noisy draw.

    Observers are PyTorch's own; this class adds two guards around them. A batch holding
    a NaN or infinity leaves the observer's running range as it was (one bad batch would
    otherwise poison the scale for the rest of training), and ``stochastic`` rounding
    draws from its own generator, seeded per module, so that a trial is reproducible.

    Per step, a float32 per-tensor quantizer on the CPU (the default configuration) turns
    the observer's new range into qparams in float32 scalars rather than through
    ``calculate_qparams``' one-element tensors: the same numbers, at a fraction of the
    host overhead that dominates a step at small widths (``bench/RESULTS.md``).
    """

    def __init__(
        self,
        observer: Any = MovingAverageMinMaxObserver,
        quant_min: int | None = None,
        quant_max: int | None = None,
        rounding: str = "nearest",
        rounding_seed: int = 0,
        **observer_kwargs: Any,
    ) -> None:
        _check_rounding(rounding)
        with quiet_deprecation():
            super().__init__(observer, quant_min, quant_max, **observer_kwargs)
        self.rounding = rounding
        self.rounding_seed = rounding_seed
        self.generator: torch.Generator | None = None
        if rounding == "stochastic":
            self.generator = torch.Generator()
            self.generator.manual_seed(rounding_seed)

    def reseed(self, seed: int) -> None:
        """Give ``stochastic`` rounding a fresh, reproducible stream on the module's device."""
        self.rounding_seed = seed
        if self.rounding == "stochastic":
            self.generator = torch.Generator(device=self.scale.device)
            self.generator.manual_seed(seed)

    def _fast_path(self, observer: Any, x: torch.Tensor) -> bool:
        """Whether ``_observe_per_tensor`` reproduces the observer exactly for this call."""
        return (
            type(observer) in _PER_TENSOR_OBSERVERS
            and (observer.qscheme, observer.dtype) in _FAST_QPARAMS
            and x.dtype == torch.float32
            and x.device.type == "cpu"
            and observer.min_val.dtype == torch.float32
            and self.scale.shape == (1,)
            and self.zero_point.shape == (1,)
        )

    def _observe(self, x: torch.Tensor) -> tuple[bool, tuple[float, int] | None]:
        """Update the running range and qparams.

        Returns whether ``x`` was finite (a NaN or infinity leaves the range as it was)
        and, on the per-tensor CPU path, the new qparams as plain numbers.
        """
        observer = self.activation_post_process
        if self._fast_path(observer, x):
            return self._observe_per_tensor(observer, x)

        previous = (observer.min_val.clone(), observer.max_val.clone())
        observer(x)
        # The running range turns non-finite exactly when x held a non-finite value.
        if not math.isfinite(float((observer.min_val + observer.max_val).sum())):
            observer.min_val.resize_(previous[0].shape).copy_(previous[0])
            observer.max_val.resize_(previous[1].shape).copy_(previous[1])
            return False, None

        self._store_qparams()
        return True, None

    def _store_qparams(self) -> None:
        scale, zero_point = self.calculate_qparams()
        if self.scale.shape != scale.shape:
            self.scale.resize_(scale.shape)
            self.zero_point.resize_(zero_point.shape)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def _observe_per_tensor(
        self, observer: Any, x: torch.Tensor
    ) -> tuple[bool, tuple[float, int] | None]:
        """``_observe`` for a float32 per-tensor range on the CPU, in Python scalars.

        PyTorch's observer still updates the range; reading it back as two floats (exact:
        they are float32 values) replaces the clones and the one-element tensor arithmetic
        of the general path, which cost more per step than the rounding itself at small
        shapes. The results are bit-identical to the general path's.
        """
        previous = (observer.min_val.item(), observer.max_val.item())
        observer(x)
        min_val, max_val = observer.min_val.item(), observer.max_val.item()
        finite = math.isfinite(min_val) and math.isfinite(max_val)
        if finite and abs(min_val) + abs(max_val) >= 2.0**127:
            # The general path's float32 sum can overflow here; ask it the same way.
            finite = math.isfinite(float(observer.min_val + observer.max_val))
        if not finite:
            observer.min_val.fill_(previous[0])
            observer.max_val.fill_(previous[1])
            return False, None
        if not min_val <= max_val:
            self._store_qparams()  # PyTorch's own check rejects such a range
            return True, None

        scale, zero_point = _per_tensor_qparams(observer, min_val, max_val)
        self.scale.fill_(scale)
        self.zero_point.fill_(zero_point)
        return True, (scale, zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        finite = None
        qparams: tuple[float, int] | None = None
        # .item() reads the one-element flags without the indexing and comparison ops.
        if self.observer_enabled.item() == 1:
            finite, qparams = self._observe(x.detach())
        if self.fake_quant_enabled.item() != 1:
            return x

        rounding = self.rounding
        if rounding == "stochastic" and not self.training:
            # Evaluation measures the deployable model, whose values are rounded once.
            rounding = "nearest"
        scale: torch.Tensor | float = self.scale
        zero_point: torch.Tensor | int = self.zero_point
        if qparams is not None:
            scale, zero_point = qparams
        observer = self.activation_post_process
        return _RoundingFakeQuantFn.apply(
            x,
            scale,
            zero_point,
            observer.quant_min,
            observer.quant_max,
            rounding,
            self.generator,
            self.ch_axis if self.is_per_channel else None,
            finite is not True,
        )

    def extra_repr(self) -> str:
        return f"rounding={self.rounding}, {super().extra_repr()}"


def make_qconfig(
    rounding: str,
    bits: int = 8,
    per_channel: bool = False,
    reduce_range: bool = False,
) -> QConfig:
    """The QConfig of one trial: affine activations over the full unsigned range, symmetric
    weights (per tensor, or per output channel), both rounded by ``rounding``.

    ``reduce_range`` drops one activation bit, as PyTorch's x86 default silently does; it is
    off unless asked for, so 8 bits means 8 bits.
    """
    _check_rounding(rounding)
    if not 2 <= bits <= 8:
        raise ConfigError(f"bits must be between 2 and 8, got {bits}")

    act_min, act_max = activation_range(bits, reduce_range)
    weight_min, weight_max = weight_range(bits)
    activation = RoundingFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=act_min,
        quant_max=act_max,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
        rounding=rounding,
    )
    weight_observer: Any = MovingAverageMinMaxObserver
    weight_kwargs: dict[str, Any] = {"qscheme": torch.per_tensor_symmetric}
    if per_channel:
        weight_observer = MovingAveragePerChannelMinMaxObserver
        weight_kwargs = {"qscheme": torch.per_channel_symmetric, "ch_axis": 0}
    weight = RoundingFakeQuantize.with_args(
        observer=weight_observer,
        quant_min=weight_min,
        quant_max=weight_max,
        dtype=torch.qint8,
        rounding=rounding,
        **weight_kwargs,
    )
    return QConfig(activation=activation, weight=weight)
