"""One trial: train the MLP on the spirals with Adam and report accuracy.

No Ray here: ``train`` runs the same way from the CLI, a test or a Tune trial. Accuracy
is always measured in eval mode with fake quantization on and observers frozen, never
after ``convert()``: real int8 kernels round to nearest whatever the mode was, which would
erase the very difference under study.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import disable_observer, enable_observer

from qatsweep.config import TrialConfig
from qatsweep.data import SpiralData, make_spirals
from qatsweep.errors import ConfigError
from qatsweep.model import build_model, fake_quantizers, reseed_rounding

log = logging.getLogger(__name__)

#: ``on_report(epoch, loss, train_acc, test_acc)``
ReportCallback = Callable[[int, float, float, float], None]


@dataclass(frozen=True)
class TrialResult:
    """Final state of a trial. Metrics are ``None`` when a trial diverged."""

    status: str  # "finished" or "diverged"
    epochs_run: int
    loss: float | None
    train_acc: float | None
    test_acc: float | None
    seconds: float
    trained_on: str

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict (the JSON of ``qatsweep train``)."""
        return asdict(self)


@dataclass(frozen=True)
class Metrics:
    """Loss and accuracies of one evaluation."""

    loss: float
    train_acc: float
    test_acc: float


def resolve_device(requested: str) -> torch.device:
    """``auto`` means the GPU when one is visible; ``cuda`` without one is an error."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if requested == "cuda":
        raise ConfigError("device 'cuda' was asked for but no CUDA device is visible")
    return torch.device("cpu")


class Trainer:
    """The state of one training run: data, model, optimizer and the position in it.

    Everything needed to continue exactly lives in ``state_dict()``: weights, observer
    ranges, quantizer scales, optimizer moments, random streams and the epoch.
    """

    def __init__(self, config: TrialConfig, data: SpiralData | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        torch.set_num_threads(config.threads)

        if data is None:
            data = make_spirals(
                config.n_samples,
                config.dims,
                config.noise,
                config.turns,
                config.test_fraction,
                config.seed,
            )
        self.data = data.to(self.device)
        self.model = build_model(config).to(self.device)
        reseed_rounding(self.model, config.seed)  # streams now live on the device
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.loss_fn = nn.CrossEntropyLoss()
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0

    @property
    def n_train(self) -> int:
        """Size of the training set."""
        return int(self.data.y_train.shape[0])

    def _batches(self) -> list[torch.Tensor] | None:
        """Index batches of one epoch, or ``None`` for one full batch."""
        size = self.config.batch_size
        if size is None or size >= self.n_train:
            return None
        order = torch.randperm(self.n_train, generator=self.batch_generator)
        return [chunk.to(self.device) for chunk in order.split(size)]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """One optimizer step; ``False`` (and no update) when the loss is not finite."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        if not math.isfinite(loss.item()):
            return False
        loss.backward()
        self.optimizer.step()
        return True

    def train_epoch(self) -> bool:
        """One pass over the training set; ``False`` as soon as a batch diverges."""
        x, y = self.data.x_train, self.data.y_train
        batches = self._batches()
        if batches is None:
            ok = self.step(x, y)
        else:
            ok = all(self.step(x[idx], y[idx]) for idx in batches)
        if ok:
            self.epoch += 1
        return ok

    @torch.no_grad()
    def evaluate(self) -> Metrics:
        """Loss and accuracy on both sets in eval mode, fake quantization on, observers off."""
        self.model.eval()
        self.model.apply(disable_observer)
        try:
            train_logits = self.model(self.data.x_train)
            test_logits = self.model(self.data.x_test)
        finally:
            self.model.apply(enable_observer)
            self.model.train()
        loss = self.loss_fn(train_logits, self.data.y_train).item()
        train_acc = (train_logits.argmax(1) == self.data.y_train).double().mean().item()
        test_acc = (test_logits.argmax(1) == self.data.y_test).double().mean().item()
        return Metrics(loss=loss, train_acc=train_acc, test_acc=test_acc)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run bit-exactly."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "batch_generator": self.batch_generator.get_state(),
            "rounding_generators": [
                q.generator.get_state() if q.generator is not None else None
                for q in fake_quantizers(self.model)
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict()``."""
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batch_generator.set_state(state["batch_generator"])
        for quantizer, rng_state in zip(
            fake_quantizers(self.model), state["rounding_generators"], strict=True
        ):
            if quantizer.generator is not None and rng_state is not None:
                quantizer.generator.set_state(rng_state)


def train(
    config: TrialConfig,
    on_report: ReportCallback | None = None,
    report_every: int = 100,
    trainer: Trainer | None = None,
    on_epoch: Callable[[Trainer], None] | None = None,
) -> TrialResult:
    """Train one trial to ``config.epochs`` and return its final metrics.

    Args:
        config: the trial.
        on_report: called after every ``report_every``-th epoch and after the last one.
        report_every: epochs between reports (at least 1).
        trainer: continue this (for example restored) trainer instead of a new one.
        on_epoch: called after every completed epoch, e.g. to save a checkpoint.

    Returns:
        ``TrialResult``; a NaN or infinite loss ends the trial as ``diverged``.
    """
    if report_every < 1:
        raise ConfigError(f"report_every must be at least 1, got {report_every}")
    started = time.perf_counter()
    trainer = trainer or Trainer(config)

    status = "finished"
    while trainer.epoch < config.epochs:
        if not trainer.train_epoch():
            status = "diverged"
            log.warning(
                "trial %s w%d d%d s%d diverged at epoch %d: non-finite loss",
                config.mode,
                config.width,
                config.depth,
                config.seed,
                trainer.epoch + 1,
            )
            break
        if on_epoch is not None:
            on_epoch(trainer)
        if on_report is not None and (
            trainer.epoch % report_every == 0 or trainer.epoch == config.epochs
        ):
            metrics = trainer.evaluate()
            on_report(trainer.epoch, metrics.loss, metrics.train_acc, metrics.test_acc)

    seconds = time.perf_counter() - started
    if status == "diverged":
        return TrialResult(status, trainer.epoch, None, None, None, seconds, str(trainer.device))
    final = trainer.evaluate()
    return TrialResult(
        status,
        trainer.epoch,
        final.loss,
        final.train_acc,
        final.test_acc,
        seconds,
        str(trainer.device),
    )
