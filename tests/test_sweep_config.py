"""Sweep files: what is accepted, what is refused, and how --set edits them."""

from __future__ import annotations

from pathlib import Path

import pytest

from qatsweep.errors import ConfigError
from qatsweep.sweep_config import apply_overrides, load_sweep, parse_override

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"


def test_seed_study_is_the_studys_grid():
    sweep = load_sweep(CONFIGS / "seed_study.yaml")
    assert sweep.size == 360
    assert sweep.grid == {
        "mode": ["baseline", "nearest", "floor", "ceil"],
        "width": [4, 8, 16, 32, 64, 128],
        "depth": [2, 4, 6, 8, 10],
        "seed": [0, 1, 2],
    }
    config = sweep.trial_config(sweep.points()[0])
    assert (config.epochs, config.lr, config.bits) == (3000, 1e-4, 8)
    assert (config.n_samples, config.dims, config.batch_size) == (2000, 100, None)
    assert not config.reduce_range


@pytest.mark.parametrize("name", ["quick", "smoke", "gpu", "seed_study"])
def test_shipped_sweep_files_are_valid(name):
    sweep = load_sweep(CONFIGS / f"{name}.yaml")
    assert sweep.size == len(sweep.points()) > 0
    assert set(sweep.grid["mode"]) >= {"nearest", "floor"}


def test_quick_has_all_four_modes_and_gpu_asks_for_cpu_too():
    assert load_sweep(CONFIGS / "quick.yaml").grid["mode"] == [
        "baseline",
        "nearest",
        "floor",
        "ceil",
    ]
    gpu = load_sweep(CONFIGS / "gpu.yaml").resources
    assert 0 < gpu.gpu < 1 and gpu.cpu >= 1


def test_overrides_edit_axes_and_fixed_settings():
    sweep = load_sweep(
        CONFIGS / "quick.yaml",
        ["grid.width=[16,32,64]", "epochs=200", "storage=/tmp/x", "resources.cpu=2"],
    )
    assert sweep.grid["width"] == [16, 32, 64]
    assert sweep.trial["epochs"] == 200
    assert sweep.resolved_storage() == "/tmp/x"
    assert sweep.trial_config(sweep.points()[0]).threads == 2


def test_relative_storage_is_made_absolute(tmp_path):
    sweep = load_sweep(CONFIGS / "smoke.yaml", ["storage=out"])
    assert sweep.resolved_storage(tmp_path) == str(tmp_path / "out")
    assert load_sweep(CONFIGS / "smoke.yaml", ["storage=s3://b/p"]).resolved_storage() == (
        "s3://b/p"
    )


def test_parse_override_reads_yaml_values():
    assert parse_override("grid.width=[16, 32]") == (["grid", "width"], [16, 32])
    assert parse_override("lr=1e-3") == (["lr"], 1e-3)
    assert parse_override("per_channel=true") == (["per_channel"], True)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


BAD = {
    "unknown-key": ("colour: red\n", "colour: unknown key"),
    "unknown-mode": ("grid: {mode: [nearest, banker]}\n", "grid.mode[1]"),
    "empty-axis": ("grid: {width: []}\n", "grid.width: an axis needs at least one value"),
    "axis-not-list": ("grid: {width: 16}\n", "grid.width"),
    "unknown-axis": ("grid: {colour: [1]}\n", "grid.colour: unknown key"),
    "width-zero": ("grid: {width: [0, 8]}\n", "grid.width[0]"),
    "bits-nine": ("bits: 9\n", "bits"),
    "lr-negative": ("lr: -1\n", "lr"),
    "epochs-text": ("epochs: many\n", "epochs"),
    "cpu-zero": ("resources: {cpu: 0}\n", "resources.cpu"),
    "gpu-negative": ("resources: {gpu: -1}\n", "resources.gpu"),
    "gpu-fractional-above-one": ("resources: {gpu: 1.5}\n", "resources.gpu"),
    "threads-set": ("threads: 4\n", "threads: set by resources.cpu"),
    "both-fixed-and-axis": ("epochs: 3\ngrid: {epochs: [1, 2]}\n", "both fixed and a grid axis"),
    "repeated-values": ("grid: {seed: [0, 0]}\n", "repeated values"),
    "bad-name": ("name: ../escape\n", "name"),
    "not-a-mapping": ("- a\n- b\n", "must be a mapping"),
    "not-yaml": ("grid: [unclosed\n", "not valid YAML"),
    "reduce-range-2-bits": ("bits: 2\nreduce_range: true\n", "reduce_range"),
    "max-concurrent-zero": ("max_concurrent: 0\n", "max_concurrent"),
}


@pytest.mark.parametrize(("body", "fragment"), BAD.values(), ids=BAD.keys())
def test_bad_sweep_files_are_config_errors(tmp_path, body, fragment):
    path = tmp_path / "bad.yaml"
    base = "name: bad\ngrid: {mode: [nearest]}\n" if not body.startswith(("- ", "name")) else ""
    if body.startswith("grid:"):
        base = "name: bad\n"
    elif body.startswith("name"):
        base = "grid: {mode: [nearest]}\n"
    path.write_text(base + body)
    with pytest.raises(ConfigError, match=None) as info:
        load_sweep(path)
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_sweep(tmp_path / "empty.yaml")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("epochs", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("grid.width=[1,", "not valid YAML"),
        ("name.x=1", "not a mapping"),
        ("grid.mode=[nearest,round]", "grid.mode[1]"),
    ],
)
def test_bad_overrides(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_sweep(CONFIGS / "smoke.yaml", [override])
    assert fragment in str(info.value)


def test_resource_overrides_pick_gpus_and_custom_resources_per_point():
    sweep = load_sweep(
        CONFIGS / "quick.yaml",
        ["resources.overrides=[{when: {width: [32]}, gpu: 0.5, custom: {accel: 1}}]"],
    )
    small = {"mode": "floor", "width": 8, "depth": 2, "seed": 0}
    wide = {**small, "width": 32}
    assert sweep.resources.for_point(small).ray_request() == {"CPU": 1.0}
    assert sweep.resources.for_point(wide).ray_request() == {"CPU": 1.0, "accel": 1.0, "GPU": 0.5}
    assert sweep.trial_config(small).device == "cpu"
    assert sweep.trial_config(wide).device == "cuda"


def test_override_on_an_unknown_axis_is_refused():
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.when\.bits: not a grid axis"):
        load_sweep(CONFIGS / "quick.yaml", ["resources.overrides=[{when: {bits: [4]}, gpu: 1}]"])


def test_overrides_keep_the_files_axis_order():
    sweep = load_sweep(CONFIGS / "quick.yaml", ["epochs=10"])
    assert sweep.axes == ["mode", "width", "depth", "seed"]


def test_set_moves_a_setting_between_fixed_and_axis():
    sweep = load_sweep(CONFIGS / "smoke.yaml", ["grid.lr=[0.1, 0.01]", "mode=ceil"])
    assert sweep.grid["lr"] == [0.1, 0.01] and "lr" not in sweep.trial
    assert sweep.trial["mode"] == "ceil" and "mode" not in sweep.grid


def test_override_values_must_be_on_the_grid():
    with pytest.raises(ConfigError, match=r"when\.width: \[7\] not on the grid \[8, 32\]"):
        load_sweep(CONFIGS / "quick.yaml", ["resources.overrides=[{when: {width: [7]}, gpu: 1}]"])
