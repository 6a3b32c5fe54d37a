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

import torch
from torch.ao.quantization import (
    FakeQuantize,
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


def _round(
    scaled: torch.Tensor,
    x: torch.Tensor,
    scale: torch.Tensor,
    rounding: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Grid index (before the zero point) of ``x`` under ``rounding``; see the module doc."""
    # torch.round is round-half-to-even, as std::nearbyint in PyTorch's kernel.
    nearest = torch.round(scaled)
    if rounding == "nearest":
        return nearest

    grid = nearest * scale  # the dequantized value of the nearest index
    if rounding == "floor":
        return nearest.sub_((grid > x).to(x.dtype))
    if rounding == "ceil":
        return nearest.add_((grid < x).to(x.dtype))
    if rounding == "toward_zero":
        down = ((grid > x) & (x >= 0)).to(x.dtype)
        up = ((grid < x) & (x < 0)).to(x.dtype)
        return nearest.sub_(down).add_(up)
    if rounding == "half_away":
        # A tie of the scaled value goes away from zero instead of to even.
        truncated = torch.trunc(scaled)
        tie = (scaled - truncated).abs() == 0.5
        return torch.where(tie, truncated + torch.sign(scaled), nearest)
    if rounding == "stochastic":
        # Round up with probability equal to the distance above the floor grid value,
        # measured in steps: unbiased, and exact grid values never move.
        lower = nearest.sub_((grid > x).to(x.dtype))
        fraction = (x - lower * scale) * torch.reciprocal(scale)
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return lower.add_((noise < fraction).to(x.dtype))
    raise ConfigError(f"unknown rounding {rounding!r}")  # guarded by _check_rounding


class _RoundingFakeQuantFn(torch.autograd.Function):
    """Fake quantization with the straight-through estimator and PyTorch's mask.

    The arithmetic is written out in tensor ops rather than calling PyTorch's fused
    kernel: that kernel rounds one element at a time on the CPU and is about five times
    slower than these vectorized ops, which give the same bits.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        quant_min: int,
        quant_max: int,
        rounding: str,
        generator: torch.Generator | None,
        axis: int | None,
        check_finite: bool,
    ) -> torch.Tensor:
        shape = [1] * x.dim()
        if axis is not None:
            shape[axis] = -1
        scale = scale.reshape(shape)
        if scale.dtype != x.dtype:
            scale = scale.to(x.dtype)
        zero_point = zero_point.reshape(shape).to(x.dtype)

        scaled = x * torch.reciprocal(scale)  # float32 reciprocal, as PyTorch's kernel
        q = _round(scaled, x, scale, rounding, generator).add_(zero_point)
        clamped = torch.clamp(q, quant_min, quant_max)
        in_range = clamped == q  # False outside the range and for NaN or infinity
        out = clamped.sub_(zero_point).mul_(scale)
        if check_finite:
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

    def _observe(self, x: torch.Tensor) -> bool:
        """Update the running range and qparams; ``False`` if ``x`` held a NaN or infinity."""
        observer = self.activation_post_process
        previous = (observer.min_val.clone(), observer.max_val.clone())
        observer(x)
        # The running range turns non-finite exactly when x held a non-finite value.
        if not math.isfinite(float((observer.min_val + observer.max_val).sum())):
            observer.min_val.resize_(previous[0].shape).copy_(previous[0])
            observer.max_val.resize_(previous[1].shape).copy_(previous[1])
            return False

        scale, zero_point = self.calculate_qparams()
        if self.scale.shape != scale.shape:
            self.scale.resize_(scale.shape)
            self.zero_point.resize_(zero_point.shape)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        finite = None
        if self.observer_enabled[0] == 1:
            finite = self._observe(x.detach())
        if self.fake_quant_enabled[0] != 1:
            return x

        rounding = self.rounding
        if rounding == "stochastic" and not self.training:
            # Evaluation measures the deployable model, whose values are rounded once.
            rounding = "nearest"
        axis = self.ch_axis if self.is_per_channel else None
        return _RoundingFakeQuantFn.apply(
            x,
            self.scale,
            self.zero_point,
            self.activation_post_process.quant_min,
            self.activation_post_process.quant_max,
            rounding,
            self.generator,
            axis,
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
