"""The study's MLP, as a float model (``baseline``) or prepared for QAT with one rounding rule.

Initial weights come from the trial seed alone, before any quantization is attached, so
that every mode of one seed starts from the same weights (paired comparisons).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules_qat, prepare_qat

from qatsweep.config import TrialConfig
from qatsweep.quant import RoundingFakeQuantize, make_qconfig, quiet_deprecation

N_CLASSES = 2


class MLP(nn.Module):
    """``depth`` hidden Linear+ReLU layers of ``width`` units and a 2-class linear head.

    The quant/dequant stubs are identities in the float model; after ``prepare_qat`` the
    first fake-quantizes the input, as a deployed int8 model would.
    """

    def __init__(self, width: int, depth: int, in_features: int = 100) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be at least 1, got {width} and {depth}")
        self.quant = QuantStub()
        blocks = []
        for i in range(depth):
            blocks.append(
                nn.Sequential(nn.Linear(in_features if i == 0 else width, width), nn.ReLU())
            )
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(width, N_CLASSES)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)  # (batch, in_features)
        x = self.hidden(x)  # (batch, width)
        return self.dequant(self.head(x))  # (batch, 2) logits


def build_model(config: TrialConfig) -> nn.Module:
    """The trial's model in training mode, on the CPU, seeded by ``config.seed``.

    Quantized modes fuse each Linear+ReLU (one activation quantizer after the ReLU, as in
    an int8 deployment) and attach ``RoundingFakeQuantize`` to weights and activations.
    """
    # fork_rng keeps the caller's random state untouched; prepare_qat draws from it too
    # (its QAT modules initialise weights before copying ours in).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MLP(config.width, config.depth, in_features=config.dims)
        model.train()
        if config.quantized:
            _prepare(model, config)
    return model


def _prepare(model: MLP, config: TrialConfig) -> None:
    with quiet_deprecation():
        fuse_modules_qat(
            model,
            [[f"hidden.{i}.0", f"hidden.{i}.1"] for i in range(config.depth)],
            inplace=True,
        )
        model.qconfig = make_qconfig(  # type: ignore[assignment]
            config.mode, config.bits, config.per_channel, config.reduce_range
        )
        prepare_qat(model, inplace=True)
    reseed_rounding(model, config.seed)


def fake_quantizers(model: nn.Module) -> list[RoundingFakeQuantize]:
    """The model's fake quantizers in a fixed (registration) order."""
    return [m for m in model.modules() if isinstance(m, RoundingFakeQuantize)]


def reseed_rounding(model: nn.Module, seed: int) -> None:
    """Give each quantizer its own stochastic-rounding stream derived from the trial seed."""
    for index, quantizer in enumerate(fake_quantizers(model)):
        quantizer.reseed(seed * 100_003 + index)
