"""Checks ``run`` makes before it starts anything: resources, storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from qatsweep.errors import ConfigError
from qatsweep.preflight import check_local_resources, check_storage_writable, unplaceable
from qatsweep.sweep_config import load_sweep

from .conftest import REPO, assert_one_line_error, run_cli

SMOKE = REPO / "tune_configs" / "smoke.yaml"


def test_a_trial_must_fit_on_one_node_not_on_the_sum():
    sweep = load_sweep(SMOKE, ["resources.cpu=2"])
    two_small = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert "asks for 2 CPU on one node, but the largest node has 1" in unplaceable(
        sweep, two_small
    )
    assert unplaceable(sweep, [{"CPU": 1.0}, {"CPU": 4.0}]) is None


def test_custom_resources_and_overrides_are_checked_per_point():
    sweep = load_sweep(
        SMOKE,
        ["grid.width=[8,32]", "resources.overrides=[{when: {width: [32]}, custom: {accel: 1}}]"],
    )
    assert "custom.accel" in unplaceable(sweep, [{"CPU": 2.0}])
    assert unplaceable(sweep, [{"CPU": 2.0}, {"CPU": 1.0, "accel": 2.0}]) is None


def test_local_sweep_larger_than_the_machine_is_refused():
    with pytest.raises(ConfigError, match="run on a cluster"):
        check_local_resources(load_sweep(SMOKE, ["resources.cpu=4096"]))


def test_storage_below_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="not a writable directory"):
        check_storage_writable(load_sweep(SMOKE, [f"storage={tmp_path / 'afile' / 'sub'}"]))
    check_storage_writable(load_sweep(SMOKE, [f"storage={tmp_path / 'new' / 'dir'}"]))
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_file_uri_storage_is_a_local_path(tmp_path):
    sweep = load_sweep(SMOKE, [f"storage=file://{tmp_path}"])
    assert not sweep.storage_is_uri and sweep.resolved_storage() == str(tmp_path)


def test_relative_storage_is_refused_when_joining_a_cluster(tmp_path):
    # Refused before any connection is tried: the address need not exist.
    result = run_cli(
        "run",
        str(SMOKE),
        "--address",
        "127.0.0.1:1",
        "--set",
        "storage=results",
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
    )
    assert_one_line_error(result, "relative path", "--set storage=")
    assert not Path(tmp_path, "results").exists()
