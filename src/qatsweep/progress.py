"""A progress line a person can read while a sweep runs (rich), instead of Tune's log wall.

It shows trials done of the total, how many run, wait and failed, and an estimate of the
time left from the pace of finished trials. Where stderr is no terminal (a log file, CI)
it prints one plain line per tenth of the grid instead. The counts are read from Tune's
trial list at every step rather than kept by hand, so they are right after a resume too,
and the live display is created lazily: Tune pickles its callbacks with the experiment.
"""

from __future__ import annotations

import logging
import sys
import time
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

_REFRESH_S = 0.5


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SweepProgress(Callback):
    """Counts trials by state and drives a rich progress bar on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._display: tuple[Progress, Any] | None = None
        self._last_refresh = 0.0
        self._offset = 0
        self._is_terminal: bool | None = None
        self._started: float | None = None
        self._printed = -1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_display"] = None
        return state

    def _ensure_display(self, done: int) -> tuple[Progress, Any]:
        if self._display is None:
            progress = Progress(
                TextColumn("[bold]trials"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("{task.fields[states]}"),
                TimeElapsedColumn(),
                TextColumn("elapsed, about"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=Console(stderr=True),
            )
            # Trials done before a resume do not count towards the pace.
            task = progress.add_task("trials", total=self.total - done, states="")
            progress.start()
            self._display = (progress, task)
            self._offset = done
        return self._display

    @staticmethod
    def count(trials: list[Any]) -> dict[str, int]:
        """Trials per state: finished, diverged, error, running, pending."""
        counts = dict.fromkeys(("finished", "diverged", "error", "running", "pending"), 0)
        for trial in trials:
            if trial.status == "TERMINATED":
                diverged = (trial.last_result or {}).get("status") == "diverged"
                counts["diverged" if diverged else "finished"] += 1
            elif trial.status == "ERROR":
                counts["error"] += 1
            elif trial.status == "RUNNING":
                counts["running"] += 1
            else:
                counts["pending"] += 1
        return counts

    def _refresh(self, trials: list[Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_refresh < _REFRESH_S:
            return
        self._last_refresh = now
        counts = self.count(trials)
        counts["pending"] += max(self.total - len(trials), 0)  # not generated yet
        done = counts["finished"] + counts["diverged"] + counts["error"]
        states = (
            f"running {counts['running']}, pending {counts['pending']}, "
            f"diverged {counts['diverged']}, errors {counts['error']}"
        )
        if self._plain():
            self._print_plain(done, states, force)
            return
        progress, task = self._ensure_display(done)
        progress.update(task, completed=done - self._offset, states=states)

    def _plain(self) -> bool:
        """Not a terminal (a log file, CI): print a line per tenth of the grid instead."""
        if self._is_terminal is None:
            self._is_terminal = Console(stderr=True).is_terminal
        return not self._is_terminal

    def _print_plain(self, done: int, states: str, force: bool) -> None:
        if self._started is None:
            self._started, self._offset = time.monotonic(), done
        step = max(1, self.total // 10)
        if done // step == self._printed // step and not (force and done == self.total):
            return
        if done == self._printed:
            return
        self._printed = done
        elapsed = time.monotonic() - self._started
        rate = (done - self._offset) / elapsed if elapsed > 0 else 0.0
        left = f", about {_clock((self.total - done) / rate)} left" if rate > 0 else ""
        print(
            f"trials {done}/{self.total} done ({states}), {_clock(elapsed)} elapsed{left}",
            file=sys.stderr,
            flush=True,
        )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._refresh(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._refresh(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._refresh(trials, force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._refresh(trials, force=True)
        self.close()

    def close(self) -> None:
        if self._display is not None:
            self._display[0].stop()
            self._display = None


class TrialLog(Callback):
    """One log line per trial that ends: INFO when it finished, WARNING when it diverged or
    failed for good. Installed with or without the progress display."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if result.get("status") == "diverged":
            log.warning("trial %s diverged at epoch %s", trial, result.get("epoch"))
        else:
            log.info("trial %s finished: test_acc %s", trial, result.get("test_acc"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.warning("trial %s failed; its error is in %s/error.txt", trial, trial.local_path)
