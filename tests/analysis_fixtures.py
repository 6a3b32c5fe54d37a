"""Hand-built trials tables for the analysis tests, on the real ``TRIALS_SCHEMA``.

Accuracies in the tests are multiples of 1/16 (or 1/64), so that means and differences of
them are exact in binary floating point and can be compared with ``==``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from qatsweep.analysis.clean import prepare
from qatsweep.analysis.load import load_trials
from qatsweep.analysis.summary import summarize
from qatsweep.schema import TRIALS_SCHEMA

_START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def trial(
    mode: str, width: int, depth: int, seed: int, test_acc: float | None, **extra: Any
) -> dict[str, Any]:
    """One row of the trials table with plausible values in the columns analysis ignores."""
    row: dict[str, Any] = {
        "trial_id": f"{mode}_w{width}_d{depth}_s{seed}",
        "experiment": "fixture",
        "mode": mode,
        "width": width,
        "depth": depth,
        "seed": seed,
        "bits": 8,
        "per_channel": False,
        "reduce_range": False,
        "epochs": 3000,
        "lr": 1e-4,
        "batch_size": None,
        "n_samples": 2000,
        "dims": 100,
        "noise": 0.05,
        "turns": 1.5,
        "test_fraction": 0.2,
        "threads": 1,
        "device": "cpu",
        "status": "finished",
        "error": None,
        "epochs_run": 3000,
        "loss": 0.25,
        "train_acc": test_acc,
        "test_acc": test_acc,
        "seconds": 12.5,
        "started_at": _START,
        "node": "node-0",
        "trained_on": "cpu",
        "qatsweep_version": "0.1.0",
        "torch_version": "2.5.1",
        "ray_version": "2.60.0",
        "python_version": "3.11.9",
        "git_rev": "6439785",
    }
    row.update(extra)
    return row


def table(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as an Arrow table with exactly the schema export writes."""
    return pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA)


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write the rows as a trials.parquet file at ``path`` and return the path."""
    pq.write_table(table(rows), path)
    return path


def grid(
    accuracies: dict[tuple[str, int, int], list[float]], **extra: Any
) -> list[dict[str, Any]]:
    """Rows for ``{(mode, width, depth): [test_acc of seed 0, seed 1, ...]}``."""
    return [
        trial(mode, width, depth, seed, acc, **extra)
        for (mode, width, depth), per_seed in accuracies.items()
        for seed, acc in enumerate(per_seed)
    ]


def summarize_rows(
    directory: Path, rows: list[dict[str, Any]], *, seed: int = 0, threshold: float = 0.70
) -> dict[str, Any]:
    """The summary of ``rows`` through load and clean as ``analyze`` does, without plots.

    Plots are what makes ``analyze`` take a second; tests of numbers do not need them.
    """
    path = write(directory / "trials.parquet", rows)
    trials = prepare(load_trials(path))
    return summarize(trials, threshold=threshold, seed=seed, source=str(path))
