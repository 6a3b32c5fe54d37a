"""qatsweep: does the rounding rule of 8-bit quantization-aware training change learning?

The package follows the pipeline of one study: ``data`` (spirals) → ``quant`` (rounding
fake-quantizer) → ``model`` (MLP) → ``trainer`` (one trial) → ``sweep`` (Ray Tune grid) →
``export`` (Parquet tables) → ``analysis`` (the findings).
"""

from __future__ import annotations

__version__ = "0.1.0"
