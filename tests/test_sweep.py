"""``qatsweep run`` and ``qatsweep export`` end to end: real Ray, real torch, real files."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qatsweep.config import TrialConfig
from qatsweep.export import build_tables
from qatsweep.schema import CURVES_SCHEMA, TRIALS_SCHEMA
from qatsweep.sweep_config import load_sweep
from qatsweep.trainer import train

from .conftest import REPO, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow

SMOKE = REPO / "tune_configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One real smoke sweep for the whole module, with its own HOME for Ray's token."""
    root = tmp_path_factory.mktemp("smoke")
    home = root / "home"
    home.mkdir()
    result = run_cli(
        "run",
        str(SMOKE),
        "--analyze",
        "--set",
        f"storage={root / 'results'}",
        env={"HOME": str(home)},
    )
    return {"result": result, "experiment": root / "results" / "smoke", "home": home}


def test_run_exits_zero_and_prints_the_summary(smoke):
    result = smoke["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean test_acc" in result.stdout
    assert f"wrote {smoke['experiment'] / 'trials.parquet'}" in result.stdout
    report = smoke["experiment"] / "report" / "report.md"
    assert f"wrote {report}" in result.stdout and report.is_file()  # --analyze
    assert "Traceback" not in result.stderr
    # Not a terminal: plain progress lines, the last one complete.
    assert "trials 2/2 done (running 0, pending 0, diverged 0, errors 0)" in result.stderr


def test_one_finished_row_per_grid_point_with_typed_columns(smoke):
    trials = pq.read_table(smoke["experiment"] / "trials.parquet")
    sweep = load_sweep(SMOKE)

    assert trials.num_rows == sweep.size
    assert trials.schema.equals(TRIALS_SCHEMA, check_metadata=False)
    frame = trials.to_pandas()
    assert frame["status"].tolist() == ["finished"] * sweep.size
    assert isinstance(frame["mode"].dtype, pd.CategoricalDtype)
    assert set(frame["mode"]) == set(sweep.grid["mode"])
    for column in ("width", "depth", "seed", "bits", "epochs", "epochs_run"):
        assert pd.api.types.is_integer_dtype(frame[column]), column
    assert frame["test_acc"].between(0, 1).all() and frame["train_acc"].between(0, 1).all()
    assert frame["batch_size"].isna().all()  # full batch, and still an integer column
    assert (frame["seconds"] > 0).all() and frame["started_at"].notna().all()
    assert frame["trained_on"].eq("cpu").all() and frame["node"].notna().all()
    assert frame["torch_version"].notna().all() and frame["ray_version"].notna().all()
    assert frame["trial_id"].tolist() == ["nearest_w8_d2_s0", "floor_w8_d2_s0"]


def test_curves_have_one_row_per_report(smoke):
    curves = pq.read_table(smoke["experiment"] / "curves.parquet")
    sweep = load_sweep(SMOKE)
    epochs, every = sweep.trial["epochs"], sweep.report_every

    assert curves.schema.equals(CURVES_SCHEMA, check_metadata=False)
    frame = curves.to_pandas()
    assert len(frame) == sweep.size * (epochs // every)
    for _, group in frame.groupby("trial_id"):
        assert group["epoch"].tolist() == list(range(every, epochs + 1, every))


def test_tables_read_back_identically_through_pandas_and_pyarrow(smoke):
    for name in ("trials.parquet", "curves.parquet"):
        path = smoke["experiment"] / name
        through_pandas = pd.read_parquet(path)
        through_arrow = pq.read_table(path).to_pandas()
        pd.testing.assert_frame_equal(through_pandas, through_arrow)
        assert pa.Table.from_pandas(through_pandas, preserve_index=False).num_rows == len(
            through_pandas
        )


def test_export_rebuilds_the_same_tables(smoke, tmp_path):
    experiment = smoke["experiment"]
    written = [pq.read_table(experiment / n) for n in ("trials.parquet", "curves.parquet")]

    result = run_cli("export", str(experiment))

    assert result.returncode == 0, result.stderr
    assert "2 trials (2 finished)" in result.stdout
    rebuilt = [pq.read_table(experiment / n) for n in ("trials.parquet", "curves.parquet")]
    assert rebuilt[0].equals(written[0]) and rebuilt[1].equals(written[1])
    assert build_tables(experiment)[0].equals(written[0])


def test_sweep_metrics_equal_a_plain_train_run(smoke):
    frame = pd.read_parquet(smoke["experiment"] / "trials.parquet")
    sweep = load_sweep(SMOKE)
    for row in frame.itertuples():
        config = sweep.trial_config(
            {"mode": row.mode, "width": row.width, "depth": row.depth, "seed": row.seed}
        )
        alone = train(config)
        assert (alone.test_acc, alone.train_acc, alone.loss) == (
            row.test_acc,
            row.train_acc,
            row.loss,
        )


def read_events(path: Path) -> list:
    """Events of a TensorBoard file: TFRecords of (length, crc, payload, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        payload = data[offset + 12 : offset + 12 + length]
        events.append(Event.FromString(payload))
        offset += 12 + length + 4
    return events


def test_tensorboard_events_per_trial_hold_the_scalars_and_hparams(smoke):
    event_files = sorted(smoke["experiment"].glob("*/events.out.tfevents.*"))
    assert len(event_files) == load_sweep(SMOKE).size
    for path in event_files:
        scalars: dict[str, list[int]] = {}
        plugins = set()
        for event in read_events(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name:
                    plugins.add(value.metadata.plugin_data.plugin_name)
                else:
                    scalars.setdefault(value.tag, []).append(event.step)
        assert {"test_acc", "train_acc", "loss"} <= scalars.keys()
        assert scalars["test_acc"] == [5, 10, 15, 20]
        assert "hparams" in plugins


def test_trial_directories_say_what_they_are(smoke):
    names = sorted(p.parent.name for p in smoke["experiment"].glob("*/params.json"))
    assert [n.rsplit("_", 2)[0] for n in names] == ["floor_w8_d2_s0", "nearest_w8_d2_s0"]
    metadata = json.loads((smoke["experiment"] / "qatsweep.json").read_text())
    assert metadata["sweep"]["grid"]["mode"] == ["nearest", "floor"]


def test_ray_token_is_private(smoke):
    token = smoke["home"] / ".ray" / "auth_token"
    assert token.is_file() and len(token.read_text()) == 64
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) & 0o077 == 0


def test_run_refuses_an_existing_experiment(smoke):
    storage = smoke["experiment"].parent
    before = sorted(os.listdir(smoke["experiment"]))
    result = run_cli("run", str(SMOKE), "--set", f"storage={storage}")
    assert_one_line_error(result, "exists already", "--set name=")
    assert sorted(os.listdir(smoke["experiment"])) == before


BAD_RUNS = {
    "missing-file": (["run", "no/such.yaml"], "no such sweep file"),
    "unknown-mode": (["run", str(SMOKE), "--set", "grid.mode=[nearest,banker]"], "grid.mode[1]"),
    "empty-axis": (["run", str(SMOKE), "--set", "grid.width=[]"], "grid.width"),
    "width-zero": (["run", str(SMOKE), "--set", "grid.width=[0]"], "grid.width[0]"),
    "unknown-key": (["run", str(SMOKE), "--set", "colour=red"], "colour: unknown key"),
    "bad-set": (["run", str(SMOKE), "--set", "epochs"], "expected KEY=VALUE"),
    "bad-resources": (["run", str(SMOKE), "--set", "resources.cpu=0"], "resources.cpu"),
    "too-many-cpus": (["run", str(SMOKE), "--set", "resources.cpu=512"], "resources.cpu"),
}


@pytest.mark.parametrize(("args", "fragment"), BAD_RUNS.values(), ids=BAD_RUNS.keys())
def test_bad_sweeps_fail_with_one_line_and_start_nothing(tmp_path, args, fragment):
    result = run_cli(
        *args, "--set", f"storage={tmp_path / 'results'}", env={"HOME": str(tmp_path)}
    )
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "results").exists()


def test_export_of_a_missing_or_foreign_directory(tmp_path):
    assert_one_line_error(run_cli("export", str(tmp_path / "nope")), "no such experiment")
    assert_one_line_error(run_cli("export", str(tmp_path)), "not a qatsweep experiment")


def test_analyze_reports_on_the_real_sweep_output(smoke, tmp_path):
    report = tmp_path / "report"
    result = run_cli("analyze", str(smoke["experiment"]), "-o", str(report))

    assert result.returncode == 0, result.stderr
    assert (report / "report.md").is_file()
    summary = json.loads((report / "summary.json").read_text())
    frame = pd.read_parquet(smoke["experiment"] / "trials.parquet")
    for mode, group in frame.groupby("mode", observed=True):
        assert summary["modes"][mode]["n"] == len(group)
        assert summary["modes"][mode]["mean"] == pytest.approx(group["test_acc"].mean())
    pngs = list(report.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for png in pngs:
        assert png.name in (report / "report.md").read_text()


def test_trial_config_of_the_sweep_is_what_train_gets():
    sweep = load_sweep(SMOKE)
    config = sweep.trial_config(sweep.points()[1])
    assert config == TrialConfig(
        mode="floor",
        width=8,
        depth=2,
        seed=0,
        epochs=20,
        lr=0.003,
        n_samples=400,
        dims=20,
        threads=1,
        device="cpu",
    )
    assert Path(sweep.resolved_storage()).is_absolute()
