"""A progress line a person can read while a sweep runs (rich), instead of Tune's log wall.

It shows trials done of the total, how many run, wait and failed, and an estimate of the
time left from the pace of finished trials.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)


class SweepProgress(Callback):
    """Counts trials by state and drives a rich progress bar on stderr."""

    def __init__(self, total: int, already_done: int = 0) -> None:
        self.total = total
        self.running: set[str] = set()
        self.finished = already_done
        self.diverged = 0
        self.errored = 0
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            TextColumn("elapsed, about"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task(
            "trials", total=total, completed=already_done, states=self._states()
        )
        self.progress.start()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a live display does not pickle.
        state = self.__dict__.copy()
        for key in ("console", "progress", "task"):
            state.pop(key, None)
        return state

    @property
    def done(self) -> int:
        return self.finished + self.diverged + self.errored

    def _states(self) -> str:
        pending = max(self.total - self.done - len(self.running), 0)
        return (
            f"running {len(self.running)}, pending {pending}, "
            f"diverged {self.diverged}, errors {self.errored}"
        )

    def _refresh(self) -> None:
        self.progress.update(self.task, completed=self.done, states=self._states())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        result = trial.last_result or {}
        if result.get("status") == "diverged":
            self.diverged += 1
            log.warning("trial %s diverged at epoch %s", trial, result.get("epoch"))
        else:
            self.finished += 1
            log.info("trial %s finished: test_acc %.4f", trial, result.get("test_acc", 0.0))
        self._refresh()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.errored += 1
        log.warning("trial %s failed; its error is in %s", trial, trial.local_path)
        self._refresh()

    def close(self) -> None:
        self._refresh()
        self.progress.stop()
