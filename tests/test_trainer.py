"""The trainer: reproducible, learning, reporting on schedule, diverging cleanly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from qatsweep.config import MODES, TrialConfig
from qatsweep.data import make_spirals
from qatsweep.errors import ConfigError
from qatsweep.trainer import Trainer, train

from .conftest import assert_one_line_error, run_cli

SMALL = {"width": 16, "depth": 2, "n_samples": 400, "dims": 20}


def _same_result(a, b) -> bool:
    return dataclasses.replace(a, seconds=0.0) == dataclasses.replace(b, seconds=0.0)


@pytest.mark.parametrize("mode", MODES)
def test_same_config_twice_gives_identical_metrics(mode):
    config = TrialConfig(mode=mode, epochs=30, batch_size=64, **SMALL)
    first, second = train(config), train(config)
    assert first.status == "finished"
    assert _same_result(first, second)


@pytest.mark.parametrize("mode", MODES)
def test_short_training_learns_in_every_mode(mode):
    config = TrialConfig(mode=mode, width=32, depth=2, epochs=200, lr=3e-3)
    result = train(config)
    assert result.status == "finished" and result.epochs_run == 200
    assert result.test_acc > 0.8, result  # chance is 0.5


def test_modes_differ_from_each_other():
    # half_away differs from nearest only on exact ties, which real activations hardly hit.
    modes = [m for m in MODES if m != "half_away"]
    results = {m: train(TrialConfig(mode=m, epochs=40, lr=1e-2, **SMALL)) for m in modes}
    assert len({r.loss for r in results.values()}) == len(modes)


def test_reports_come_every_report_every_epochs_and_at_the_end():
    seen = []
    result = train(
        TrialConfig(mode="floor", epochs=25, **SMALL),
        on_report=lambda *values: seen.append(values),
        report_every=10,
    )
    assert [epoch for epoch, *_ in seen] == [10, 20, 25]
    assert seen[-1][1:] == (result.loss, result.train_acc, result.test_acc)
    assert all(
        0.0 <= acc <= 1.0 for _, _, train_acc, test_acc in seen for acc in (train_acc, test_acc)
    )


def test_zero_epochs_evaluates_the_initial_model():
    result = train(TrialConfig(mode="nearest", epochs=0, **SMALL))
    assert result.status == "finished" and result.epochs_run == 0
    assert 0.0 <= result.test_acc <= 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("mode", ["baseline", "nearest", "floor"])
def test_non_finite_loss_ends_the_trial_as_diverged(mode, bad):
    config = TrialConfig(mode=mode, epochs=10, **SMALL)
    data = make_spirals(400, 20, seed=0)
    data.x_train[3, 5] = bad
    trainer = Trainer(config, data=data)

    result = train(config, trainer=trainer)

    assert result.status == "diverged" and result.epochs_run == 0
    assert result.loss is None and result.test_acc is None
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_restored_trainer_finishes_bit_identically():
    config = TrialConfig(mode="stochastic", epochs=30, batch_size=100, **SMALL)
    straight = train(config)

    first = Trainer(config)
    for _ in range(12):
        first.train_epoch()
    state = first.state_dict()
    resumed = Trainer(config)
    resumed.load_state_dict(state)

    assert _same_result(train(config, trainer=resumed), straight)


def test_thread_count_comes_from_the_config():
    before = torch.get_num_threads()
    try:
        Trainer(TrialConfig(threads=1, **SMALL))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_asking_for_cuda_without_one_is_a_config_error():
    with pytest.raises(ConfigError, match="no CUDA device"):
        Trainer(TrialConfig(device="cuda", **SMALL))


def test_report_every_must_be_positive():
    with pytest.raises(ConfigError, match="report_every"):
        train(TrialConfig(**SMALL), report_every=0)


# --- qatsweep train ---------------------------------------------------------------------


def test_cli_train_twice_prints_the_same_json():
    args = (
        "train",
        "--mode",
        "ceil",
        "--epochs",
        "20",
        "--width",
        "8",
        "--depth",
        "2",
        "--n-samples",
        "400",
        "--dims",
        "20",
        "--seed",
        "2",
    )
    outputs = []
    for _ in range(2):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1
        outputs.append(json.loads(lines[0]))

    for output in outputs:
        assert output.pop("seconds") > 0
    assert outputs[0] == outputs[1]
    assert {
        "mode",
        "width",
        "depth",
        "seed",
        "bits",
        "epochs",
        "test_acc",
        "train_acc",
        "loss",
        "status",
    } <= outputs[0].keys()
    assert outputs[0]["mode"] == "ceil" and outputs[0]["status"] == "finished"

    config = TrialConfig(mode="ceil", epochs=20, width=8, depth=2, n_samples=400, dims=20, seed=2)
    assert outputs[0]["test_acc"] == train(config).test_acc


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--mode", "round"], "--mode"),
        (["--width", "0"], "width"),
        (["--depth", "0"], "depth"),
        (["--bits", "1"], "bits"),
        (["--bits", "9"], "bits"),
        (["--epochs", "-1"], "epochs"),
        (["--lr", "0"], "lr"),
        (["--lr", "-0.1"], "lr"),
        (["--width", "abc"], "width"),
        (["--test-fraction", "1.5"], "test_fraction"),
        (["--device", "tpu"], "--device"),
        (["--frobnicate"], "unrecognized"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_cli_train_rejects_bad_parameters(args, fragment):
    assert_one_line_error(run_cli("train", "--epochs", "1", *args), fragment)
