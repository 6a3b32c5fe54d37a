"""Export from hand-made experiment directories: statuses read from what trials left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qatsweep.export import build_tables
from qatsweep.sweep_config import load_sweep, sweep_to_dict

from .conftest import REPO

SMOKE = REPO / "tune_configs" / "smoke.yaml"


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """A smoke experiment (max_failures 2) whose floor trial left only an error.txt."""
    sweep = load_sweep(SMOKE, [f"storage={tmp_path}"])
    root = tmp_path / "smoke"
    root.mkdir()
    (root / "qatsweep.json").write_text(json.dumps({"sweep": sweep_to_dict(sweep)}))
    trial = root / "floor_w8_d2_s0_abc_00001"
    trial.mkdir()
    params = {**sweep.trial, "mode": "floor", "width": 8, "depth": 2, "seed": 0}
    (trial / "params.json").write_text(json.dumps(params))
    return root


def _failures(directory: Path, count: int) -> None:
    text = "".join(
        f"Failure # {i} (occurred at now)\nTraceback...\nRuntimeError: boom {i}\n"
        for i in range(1, count + 1)
    )
    (directory / "error.txt").write_text(text)


def _status(root: Path) -> dict[str, str]:
    trials, _ = build_tables(root)
    return dict(zip(trials.column("trial_id").to_pylist(),
                    trials.column("status").to_pylist(), strict=True))


@pytest.mark.parametrize(("failures", "status"), [(1, "running"), (2, "running"), (3, "error")])
def test_a_trial_is_an_error_only_once_its_retries_are_spent(experiment, failures, status):
    _failures(experiment / "floor_w8_d2_s0_abc_00001", failures)
    assert _status(experiment) == {"nearest_w8_d2_s0": "pending", "floor_w8_d2_s0": status}


def test_the_error_column_holds_the_last_failure(experiment):
    _failures(experiment / "floor_w8_d2_s0_abc_00001", 3)
    trials, _ = build_tables(experiment)
    assert trials.column("error").to_pylist() == [None, "RuntimeError: boom 3"]


def test_a_final_report_wins_over_earlier_failures(experiment):
    trial = experiment / "floor_w8_d2_s0_abc_00001"
    _failures(trial, 1)
    final = {"epoch": 20, "loss": 0.5, "train_acc": 0.75, "test_acc": 0.7, "status": "finished",
             "seconds": 1.0, "started_at": 0.0}
    (trial / "result.json").write_text(json.dumps(final) + "\n")
    trials, curves = build_tables(experiment)
    assert trials.column("status").to_pylist() == ["pending", "finished"]
    assert trials.column("error").to_pylist() == [None, None]
    assert curves.column("epoch").to_pylist() == [20]
