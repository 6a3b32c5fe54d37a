"""Checkpoints, retries and resume: a failure or a killed driver costs no finished trial."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from qatsweep.sweep_config import load_sweep
from qatsweep.trainer import train

from .conftest import REPO, run_cli

pytestmark = pytest.mark.slow

SMOKE = REPO / "tune_configs" / "smoke.yaml"


def _sweep_args(storage: Path, *overrides: str) -> list[str]:
    return [
        str(SMOKE),
        "--no-progress",
        "--set",
        f"storage={storage}",
        *[arg for o in overrides for arg in ("--set", o)],
    ]


def _plain_train(row, overrides: tuple[str, ...] = ()):
    sweep = load_sweep(SMOKE, list(overrides))
    point = {axis: getattr(row, axis) for axis in sweep.axes}
    return train(sweep.trial_config(point))


def test_a_failed_trial_retries_from_its_checkpoint_with_identical_results(tmp_path):
    overrides = ("checkpoint_every=5",)
    env = {"HOME": str(tmp_path), "QATSWEEP_INJECT_FAILURE": "epoch=12,trial=floor"}

    result = run_cli("run", *_sweep_args(tmp_path, *overrides), env=env)

    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / "smoke"
    markers = glob.glob(str(experiment / "floor_*" / "injected_failure_*"))
    assert len(markers) == 1  # it did fail once, then finished
    frame = pd.read_parquet(experiment / "trials.parquet")
    assert frame["status"].tolist() == ["finished", "finished"]
    for row in frame.itertuples():
        alone = _plain_train(row, overrides)
        assert (row.loss, row.train_acc, row.test_acc) == (
            alone.loss,
            alone.train_acc,
            alone.test_acc,
        )
    curves = pd.read_parquet(experiment / "curves.parquet")
    floor = curves[curves["mode"] == "floor"]
    assert floor["epoch"].tolist() == [5, 10, 15, 20]  # the retry's repeats are not doubled


def test_a_trial_that_always_fails_ends_as_error_and_the_rest_carry_on(tmp_path):
    env = {"HOME": str(tmp_path), "QATSWEEP_INJECT_FAILURE": "epoch=3,trial=floor,times=always"}

    result = run_cli("run", *_sweep_args(tmp_path, "max_failures=1"), env=env)

    assert result.returncode == 1
    assert "1 trial(s) failed: floor_w8_d2_s0" in result.stderr
    experiment = tmp_path / "smoke"
    frame = pd.read_parquet(experiment / "trials.parquet").set_index("trial_id")
    assert frame.loc["nearest_w8_d2_s0", "status"] == "finished"
    assert frame.loc["floor_w8_d2_s0", "status"] == "error"
    assert "injected failure at epoch 3" in frame.loc["floor_w8_d2_s0", "error"]
    assert pd.isna(frame.loc["floor_w8_d2_s0", "test_acc"])
    # Tune's own record: the first attempt and max_failures=1 retry both failed.
    (error_file,) = glob.glob(str(experiment / "floor_*" / "error.txt"))
    assert Path(error_file).read_text().count("Failure #") == 2


def test_divergence_is_a_result_and_is_not_retried(tmp_path):
    result = run_cli(
        "run",
        *_sweep_args(tmp_path, "grid.lr=[0.003, 1.0e20]", "grid.mode=[floor]"),
        env={"HOME": str(tmp_path)},
    )

    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_parquet(tmp_path / "smoke" / "trials.parquet").set_index("lr")
    assert frame.loc[0.003, "status"] == "finished"
    diverged = frame.loc[1e20]
    assert diverged["status"] == "diverged" and pd.isna(diverged["test_acc"])
    assert diverged["epochs_run"] < 20
    assert not glob.glob(str(tmp_path / "smoke" / "*" / "error.txt"))


def _terminated_trials(experiment: Path) -> set[str]:
    """Trials the experiment's saved state calls finished (what a resume will keep)."""
    names: set[str] = set()
    for path in experiment.glob("experiment_state-*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being rewritten
        for trial_json, _ in state.get("trial_data", []):
            trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
            if trial.get("status") == "TERMINATED":
                names.add(trial["custom_dirname"])
    return names


def _final_report(trial_dir: Path) -> dict:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return next(
        json.loads(line)
        for line in reversed(lines)
        if json.loads(line).get("status") == "finished"
    )


def _ray_processes() -> set[int]:
    names = ("raylet", "gcs_server", "ray::", "default_worker", "dashboard", "log_monitor")
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if any(name in cmdline for name in names):
            found.add(process.pid)
    return found


def test_resume_after_the_driver_is_killed_finishes_exactly_the_rest(tmp_path):
    overrides = ("grid.seed=[0,1,2]", "epochs=600", "report_every=50", "checkpoint_every=100")
    experiment = tmp_path / "smoke"
    before = _ray_processes()
    driver = subprocess.Popen(
        [sys.executable, "-m", "qatsweep", "run", *_sweep_args(tmp_path, *overrides)],
        cwd=REPO,
        env={**os.environ, "HOME": str(tmp_path)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while len(_terminated_trials(experiment)) < 2:
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        finished_before = _terminated_trials(experiment)
        os.killpg(driver.pid, signal.SIGKILL)  # the laptop lid closes
        driver.wait(30)
    finally:
        for pid in _ray_processes() - before:  # Ray processes the dead driver left behind
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
    assert len(finished_before) < 6
    assert not (experiment / "trials.parquet").exists()
    kept = {name: _final_report(experiment / name) for name in finished_before}

    result = run_cli("resume", str(experiment), env={"HOME": str(tmp_path)})

    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_parquet(experiment / "trials.parquet")
    assert len(frame) == 6 and frame["trial_id"].is_unique
    assert (frame["status"] == "finished").all()
    by_dir = {d.name: d for d in experiment.iterdir() if (d / "params.json").exists()}
    assert len(by_dir) == 6
    for name, report in kept.items():
        after = _final_report(by_dir[name])
        assert after["started_at"] == report["started_at"]  # not run again
        assert after["test_acc"] == report["test_acc"]
    for row in frame.itertuples():  # resumed mid-way or not, the same bits as one run
        alone = _plain_train(row, overrides)
        assert (row.loss, row.test_acc) == (alone.loss, alone.test_acc)


def test_run_on_an_existing_experiment_points_at_resume(tmp_path):
    (tmp_path / "smoke").mkdir()
    result = run_cli("run", *_sweep_args(tmp_path), env={"HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "qatsweep resume" in result.stderr


def test_ctrl_c_writes_the_tables_of_what_finished_and_points_at_resume(tmp_path):
    overrides = ("grid.seed=[0,1,2]", "epochs=600", "report_every=50")
    experiment = tmp_path / "smoke"
    driver = subprocess.Popen(
        [sys.executable, "-m", "qatsweep", "run", *_sweep_args(tmp_path, *overrides)],
        cwd=REPO,
        env={**os.environ, "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _terminated_trials(experiment):
            assert driver.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()

    assert driver.returncode == 130, stderr[-3000:]
    assert f"qatsweep resume {experiment}" in stderr
    frame = pd.read_parquet(experiment / "trials.parquet")
    assert len(frame) == 6
    statuses = set(frame["status"])
    assert "finished" in statuses and statuses & {"running", "pending"}
