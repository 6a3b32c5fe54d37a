"""Fake quantization with a choice of rounding: the arithmetic, and its gradient.

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
from typing import Any

import torch

from qatsweep.config import ROUNDING_MODES
from qatsweep.errors import ConfigError
from qatsweep.quant.qparams import f32_reciprocal


def check_rounding(rounding: str) -> None:
    """Raise ``ConfigError`` for a rounding rule qatsweep does not know."""
    if rounding not in ROUNDING_MODES:
        raise ConfigError(
            f"unknown rounding {rounding!r}; choose one of {', '.join(ROUNDING_MODES)}"
        )


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
    raise ConfigError(f"unknown rounding {rounding!r}")  # guarded by check_rounding


def all_finite(x: torch.Tensor) -> bool:
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


class RoundingFakeQuantFn(torch.autograd.Function):
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
            inv_scale = f32_reciprocal(scale)

        scaled = x * inv_scale
        q = _round(scaled, x, scale, inv_scale, rounding, generator).add_(zero_point)
        clamped = torch.clamp(q, quant_min, quant_max)
        # 1.0 inside the range, 0.0 outside it and for NaN or infinity; kept as a float
        # because multiplying the gradient by a bool mask is slow on the CPU.
        in_range = torch.eq(clamped, q, out=q)
        out = clamped.sub_(zero_point).mul_(scale)
        if check_finite and not all_finite(x):
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
    check_rounding(rounding)
    if quant_min > quant_max:
        raise ConfigError(f"quant_min {quant_min} exceeds quant_max {quant_max}")
    scale_t = torch.as_tensor(scale, dtype=torch.float32, device=x.device).reshape(1)
    zero_point_t = torch.as_tensor(zero_point, device=x.device).reshape(1)
    return RoundingFakeQuantFn.apply(
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
    check_rounding(rounding)
    return RoundingFakeQuantFn.apply(
        x, scale, zero_point, quant_min, quant_max, rounding, generator, axis, True
    )
