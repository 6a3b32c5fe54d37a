"""TensorBoard logs of a sweep: per-trial curves and the hparams view, via tensorboardX.

A subclass of Tune's own TBX logger, so Tune adds no second one; it logs the three metrics
under their own names (``test_acc``, ``train_acc``, ``loss``, stepped by epoch) rather than
every number in a result, and the hparams view compares the grid axes by final metrics.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.logger import TBXLoggerCallback

METRICS = ("test_acc", "train_acc", "loss")


class SweepTensorBoard(TBXLoggerCallback):
    """Writes ``events.out.tfevents.*`` into each trial's directory."""

    def __init__(self) -> None:
        super().__init__()
        self._last_epoch: dict[str, int] = {}

    def log_trial_start(self, trial: Any) -> None:
        super().log_trial_start(trial)
        # A restored trial repeats the epochs after its checkpoint: they are logged already.
        last = (trial.last_result or {}).get("epoch")
        if last is not None:
            self._last_epoch.setdefault(trial.trial_id, last)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer = self._trial_writer[trial]
        epoch = result.get("epoch")
        values = {k: result.get(k) for k in METRICS}
        if epoch is None or any(v is None or not math.isfinite(v) for v in values.values()):
            return  # a diverged trial's final report carries no metrics
        if epoch <= self._last_epoch.get(trial.trial_id, -1):
            return  # the final report repeats the last epoch; a retry repeats a few
        self._last_epoch[trial.trial_id] = epoch
        for key, value in values.items():
            writer.add_scalar(key, value, global_step=epoch)
        writer.flush()
        self._trial_result[trial] = values  # the hparams view shows the last ones
