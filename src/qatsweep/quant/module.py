"""The eager-mode QAT module and its QConfig: PyTorch's observers, our rounding."""

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

from qatsweep.errors import ConfigError
from qatsweep.quant.qparams import (
    FAST_QPARAMS,
    PER_TENSOR_OBSERVERS,
    per_tensor_qparams,
)
from qatsweep.quant.rounding import (
    RoundingFakeQuantFn,
    check_rounding,
)


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
        check_rounding(rounding)
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
            type(observer) in PER_TENSOR_OBSERVERS
            and (observer.qscheme, observer.dtype) in FAST_QPARAMS
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

        scale, zero_point = per_tensor_qparams(observer, min_val, max_val)
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
        return RoundingFakeQuantFn.apply(
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
    check_rounding(rounding)
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
