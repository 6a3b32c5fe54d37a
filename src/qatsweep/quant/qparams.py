"""An observer's range to scale and zero point, in float32 scalars, as PyTorch computes them.

PyTorch's ``calculate_qparams`` does a dozen one-element tensor ops per call, each with
several microseconds of host dispatch; at small widths that dominates a training step.
The same float32 operations on numpy scalars give the same numbers in nanoseconds.
``tests/test_quant.py`` pins them against ``calculate_qparams`` on random ranges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.ao.quantization import MinMaxObserver, MovingAverageMinMaxObserver

_F32 = np.float32
#: Per-tensor observers whose qparams ``per_tensor_qparams`` reproduces: both inherit
#: ``calculate_qparams`` from ``MinMaxObserver`` unchanged.
PER_TENSOR_OBSERVERS = (MinMaxObserver, MovingAverageMinMaxObserver)
#: (qscheme, dtype) pairs it reproduces; the zero point of other symmetric dtypes differs.
FAST_QPARAMS = {
    (torch.per_tensor_affine, torch.quint8),
    (torch.per_tensor_affine, torch.qint8),
    (torch.per_tensor_symmetric, torch.qint8),
}


def f32_reciprocal(scale: float) -> float:
    """``1 / scale`` rounded to float32, as ``torch.reciprocal`` on a float32 tensor."""
    return float(_F32(1.0) / _F32(scale))


def per_tensor_qparams(observer: Any, min_val: float, max_val: float) -> tuple[float, int]:
    """``observer.calculate_qparams()`` for a finite running range, in float32 scalars.

    The same steps as PyTorch's ``_calculate_qparams`` for the (qscheme, dtype) pairs of
    ``FAST_QPARAMS``, on numpy float32 scalars instead of one-element tensors: each
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
