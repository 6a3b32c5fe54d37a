"""The fake quantizer under study: PyTorch's affine fake quantization with a choice of rounding.

``fake_quantize`` (in :mod:`~qatsweep.quant.rounding`) holds the arithmetic;
``RoundingFakeQuantize`` (:mod:`~qatsweep.quant.module`) is the eager-mode QAT module, a
``torch.ao.quantization.FakeQuantize`` whose ``forward`` uses it, and ``make_qconfig``
builds the QConfig that ``prepare_qat`` needs. :mod:`~qatsweep.quant.qparams` turns an
observer's range into scale and zero point cheaply, with PyTorch's exact arithmetic.
"""

from __future__ import annotations

from qatsweep.quant.module import (
    RoundingFakeQuantize,
    activation_range,
    make_qconfig,
    quiet_deprecation,
    weight_range,
)
from qatsweep.quant.rounding import fake_quantize, fake_quantize_per_channel

__all__ = [
    "RoundingFakeQuantize",
    "activation_range",
    "fake_quantize",
    "fake_quantize_per_channel",
    "make_qconfig",
    "quiet_deprecation",
    "weight_range",
]
