"""From a Tune experiment directory to ``trials.parquet`` and ``curves.parquet``.

The tables are built from the files every trial leaves (``params.json``, ``result.json``,
``error.txt``) and from the sweep recorded in ``qatsweep.json``, never from
``ResultGrid.get_dataframe()``, which drops trials that failed before their first report.
Grid points that never started appear as ``pending``, so a table always has one row per
grid point, and the same directory always gives the same tables, while it runs or after.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from qatsweep.config import TrialConfig
from qatsweep.errors import ConfigError, ResultsError
from qatsweep.schema import (
    CONFIG_COLUMNS,
    CURVES_FILE,
    CURVES_SCHEMA,
    METADATA_FILE,
    TRIALS_FILE,
    TRIALS_SCHEMA,
)
from qatsweep.storage import Location
from qatsweep.sweep_config import SweepConfig, validate_sweep

log = logging.getLogger(__name__)

FINAL_STATUSES = ("finished", "diverged")
VERSION_KEYS = ("qatsweep_version", "torch_version", "ray_version", "python_version")


def trial_name(config: dict[str, Any], varying: list[str]) -> str:
    """A short name that says what the trial is, e.g. ``floor_w16_d4_s0_bits4``."""
    parts = [
        str(config["mode"]),
        f"w{config['width']}",
        f"d{config['depth']}",
        f"s{config['seed']}",
    ]
    for axis in varying:
        if axis not in ("mode", "width", "depth", "seed"):
            parts.append(f"{axis}{config[axis]}")
    return re.sub(r"[^A-Za-z0-9._-]", "-", "_".join(parts))


@dataclass
class TrialFiles:
    """What one trial directory holds."""

    directory: str
    config: TrialConfig
    reports: list[dict[str, Any]]
    error: str | None
    failures: int  # attempts that raised, from Tune's error.txt


def read_metadata(experiment: Location) -> tuple[SweepConfig, dict[str, Any]]:
    """The sweep and run metadata written when the experiment started."""
    if not experiment.exists():
        raise ResultsError(f"{experiment.display()}: no such experiment directory")
    if not experiment.is_dir():
        raise ResultsError(f"{experiment.display()}: not a directory")
    if not experiment.exists(METADATA_FILE):
        raise ResultsError(
            f"{experiment.display()}: not a qatsweep experiment (no {METADATA_FILE}); "
            "give the directory `qatsweep run` created, e.g. results/<name>"
        )
    try:
        metadata = json.loads(experiment.read_text(METADATA_FILE))
        sweep = validate_sweep(metadata["sweep"], source=experiment.display(METADATA_FILE))
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as err:
        raise ResultsError(
            f"{experiment.display(METADATA_FILE)}: unreadable experiment metadata ({err})"
        ) from err
    return sweep, metadata


def _read_reports(experiment: Location, directory: str) -> list[dict[str, Any]]:
    if not experiment.exists(directory, "result.json"):
        return []
    reports = []
    for line in experiment.read_text(directory, "result.json").splitlines():
        if not line.strip():
            continue
        try:
            reports.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: skipping a partly written report", directory)
    return reports


def _read_error(experiment: Location, directory: str) -> tuple[str | None, int]:
    """The last failure's message and how many attempts failed (Tune appends each one)."""
    if not experiment.exists(directory, "error.txt"):
        return None, 0
    text = experiment.read_text(directory, "error.txt")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    failures = max(1, sum(line.startswith("Failure #") for line in lines))
    # The last line of a Python traceback names the exception and its message.
    return (lines[-1][:2000] if lines else "the trial failed"), failures


def read_trial(experiment: Location, directory: str) -> TrialFiles | None:
    """One trial directory, or ``None`` if it is not a trial's (no ``params.json``)."""
    if not experiment.exists(directory, "params.json"):
        return None
    try:
        params = json.loads(experiment.read_text(directory, "params.json"))
        config = TrialConfig.model_validate(params)
    except (json.JSONDecodeError, ValidationError) as err:
        log.warning("%s: unreadable params.json, skipped (%s)", directory, err)
        return None
    error, failures = _read_error(experiment, directory)
    return TrialFiles(directory, config, _read_reports(experiment, directory), error, failures)


def _config_key(config: TrialConfig) -> tuple[Any, ...]:
    values = config.model_dump()
    return tuple(values[c] for c in CONFIG_COLUMNS if c not in ("device", "threads"))


def _status(trial: TrialFiles, max_failures: int) -> tuple[str, dict[str, Any] | None]:
    """``finished``/``diverged`` with the final report, else ``error`` once the retries are
    spent, else ``running`` (still going, retrying, or stopped mid-way: resumable)."""
    final = next((r for r in reversed(trial.reports) if r.get("status") in FINAL_STATUSES), None)
    if final is not None:
        return str(final["status"]), final
    if trial.failures > max_failures:
        return "error", None
    return "running", None


def _preference(trial: TrialFiles, max_failures: int) -> tuple[int, int]:
    status, _ = _status(trial, max_failures)
    rank = {"finished": 3, "diverged": 3, "error": 2}.get(status, 1)
    return rank, len(trial.reports)


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def build_tables(experiment_dir: str | Any) -> tuple[pa.Table, pa.Table]:
    """Rebuild ``(trials, curves)`` from a Tune experiment directory, finished or not.

    Raises:
        ResultsError: the directory is missing or is not a qatsweep experiment.
    """
    experiment = Location(experiment_dir)
    sweep, metadata = read_metadata(experiment)

    by_key: dict[tuple[Any, ...], TrialFiles] = {}
    for directory in experiment.subdirs():
        trial = read_trial(experiment, directory)
        if trial is None:
            continue
        key = _config_key(trial.config)
        if key not in by_key or _preference(trial, sweep.max_failures) > _preference(
            by_key[key], sweep.max_failures
        ):
            by_key[key] = trial

    trial_rows: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    for point in sweep.points():
        config = sweep.trial_config(point)
        name = trial_name(config.model_dump(), sweep.axes)
        trial = by_key.get(_config_key(config))
        row: dict[str, Any] = {
            "trial_id": name,
            "experiment": sweep.name,
            **config.model_dump(),
            "status": "pending",
            "git_rev": metadata.get("git_rev"),
        }
        if trial is not None:
            row.update(_trial_outcome(trial, sweep.max_failures))
            curve_rows.extend(_curve_rows(name, config, trial))
        trial_rows.append(row)

    trials = pa.Table.from_pylist(trial_rows, schema=TRIALS_SCHEMA)
    curves = pa.Table.from_pylist(curve_rows, schema=CURVES_SCHEMA)
    return trials, curves


def _trial_outcome(trial: TrialFiles, max_failures: int) -> dict[str, Any]:
    status, final = _status(trial, max_failures)
    first = trial.reports[0] if trial.reports else {}
    last = trial.reports[-1] if trial.reports else {}
    outcome: dict[str, Any] = {
        "status": status,
        "tune_trial_id": first.get("trial_id"),
        "error": trial.error if status == "error" else None,
        "started_at": _timestamp(first.get("started_at")),
        "node": last.get("node"),
        "hostname": last.get("hostname"),
        "trained_on": last.get("trained_on"),
    }
    if final is not None:
        outcome.update(
            {
                "epochs_run": final.get("epoch"),
                "loss": final.get("loss"),
                "train_acc": final.get("train_acc"),
                "test_acc": final.get("test_acc"),
                "seconds": final.get("seconds"),
                **{key: final.get(key) for key in VERSION_KEYS},
            }
        )
    elif trial.reports:
        outcome["epochs_run"] = trial.reports[-1].get("epoch")
    return outcome


def _curve_rows(name: str, config: TrialConfig, trial: TrialFiles) -> list[dict[str, Any]]:
    rows = []
    seen: set[int] = set()
    for report in trial.reports:
        epoch = report.get("epoch")
        if epoch is None or report.get("test_acc") is None or epoch in seen:
            continue  # a diverged trial's last report has no metrics; a retry repeats epochs
        seen.add(epoch)
        rows.append(
            {
                "trial_id": name,
                **config.model_dump(),
                "epoch": epoch,
                "loss": report.get("loss"),
                "train_acc": report.get("train_acc"),
                "test_acc": report.get("test_acc"),
            }
        )
    return rows


def table_bytes(table: pa.Table) -> bytes:
    """``table`` serialized as a Parquet file."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def write_tables(experiment_dir: str | Any, trials: pa.Table, curves: pa.Table) -> list[str]:
    """Write both tables into the experiment directory, atomically; return their paths."""
    experiment = Location(experiment_dir)
    paths = experiment.write_files(
        {TRIALS_FILE: table_bytes(trials), CURVES_FILE: table_bytes(curves)}
    )
    for path in paths:
        log.debug("wrote %s", path)
    return paths


def export_experiment(experiment_dir: str | Any) -> tuple[pa.Table, pa.Table, list[str]]:
    """``build_tables`` then ``write_tables``."""
    trials, curves = build_tables(experiment_dir)
    return trials, curves, write_tables(experiment_dir, trials, curves)
