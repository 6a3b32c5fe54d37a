"""Issue #6, bad input never costs data: every bad input to the ``qatsweep`` command gets
exit code 2 and one line on stderr naming the problem, and leaves every file as it was.

Each case builds its files in ``tmp_path``, snapshots everything below it, runs the CLI as
a subprocess (with its own ``HOME`` outside ``tmp_path``, so no Ray state could reach the
user's), and checks the error and that the snapshot is unchanged. No case should need Ray
to start.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from qatsweep.schema import TRIALS_SCHEMA
from tests import analysis_fixtures as fx

from .conftest import REPO, assert_one_line_error, run_cli

SMOKE = REPO / "tune_configs" / "smoke.yaml"
CSV = b"mode,width,depth,seed,status,test_acc\nnearest,4,2,0,finished,0.5\n"
NOT_PARQUET = "trials.parquet is not a readable Parquet file"
CORRUPT = ("qatsweep.json", "unreadable experiment metadata")
ROWS = fx.grid({("nearest", 4, 2): [0.75, 0.8125], ("floor", 4, 2): [0.6875, 0.75]})


# --- builders: each makes its files in the case's directory and returns the arguments --


def _smoke(tmp: Path, **changes: Any) -> dict[str, Any]:
    """smoke.yaml with storage in ``tmp``, edited by ``changes`` (``grid`` and ``resources``
    merge)."""
    sweep = yaml.safe_load(SMOKE.read_text())
    sweep["storage"] = str(tmp / "results")
    grid = changes.pop("grid", {})
    sweep["grid"].update(grid)
    resources = changes.pop("resources", {})
    sweep["resources"].update(resources)
    sweep.update(changes)
    return sweep


def _sweep_file(tmp: Path, **changes: Any) -> Path:
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(_smoke(tmp, **changes), sort_keys=False))
    return path


def _text_file(tmp: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _run(**changes: Any) -> Callable[[Path], list[str]]:
    """``qatsweep run`` of smoke.yaml with ``changes`` made in the file."""
    return lambda tmp: ["run", str(_sweep_file(tmp, **changes))]


def _run_set(*overrides: str) -> Callable[[Path], list[str]]:
    """``qatsweep run`` of a good sweep file with ``--set`` overrides."""

    def build(tmp: Path) -> list[str]:
        args = ["run", str(_sweep_file(tmp))]
        for override in overrides:
            args += ["--set", override]
        return args

    return build


def _run_missing(tmp: Path) -> list[str]:
    return ["run", str(tmp / "nope.yaml")]


def _run_text(text: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", str(_text_file(tmp, text))]


def _run_storage_below_file(tmp: Path) -> list[str]:
    _text_file(tmp, "a regular file\n", name="afile")
    return ["run", str(_sweep_file(tmp)), "--set", f"storage={tmp / 'afile' / 'sub'}"]


def _run_existing_experiment(tmp: Path) -> list[str]:
    experiment = tmp / "results" / "smoke"
    experiment.mkdir(parents=True)
    (experiment / "notes.txt").write_text("an earlier sweep's files\n")
    return ["run", str(_sweep_file(tmp))]


def _run_directory(tmp: Path) -> list[str]:
    (tmp / "sweep.yaml").mkdir()
    (tmp / "sweep.yaml" / "inside.txt").write_text("not a sweep\n")
    return ["run", str(tmp / "sweep.yaml")]


def _metadata(tmp: Path) -> str:
    return json.dumps({"sweep": _smoke(tmp, name="smoke"), "git_rev": None}, indent=2)


def _experiment(tmp: Path) -> Path:
    """A hand-made experiment directory: a valid qatsweep.json, no trials (all pending)."""
    experiment = tmp / "results" / "smoke"
    experiment.mkdir(parents=True)
    (experiment / "qatsweep.json").write_text(_metadata(tmp))
    return experiment


def _foreign(tmp: Path) -> Path:
    directory = tmp / "foreign"
    (directory / "sub").mkdir(parents=True)
    (directory / "notes.txt").write_text("not an experiment\n")
    (directory / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return directory


def _corrupt_metadata(tmp: Path) -> Path:
    experiment = tmp / "results" / "smoke"
    experiment.mkdir(parents=True)
    (experiment / "qatsweep.json").write_text('{"sweep": {"name": "smoke", ')
    (experiment / "notes.txt").write_text("kept\n")
    return experiment


def _on_dir(command: str, make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda tmp: [command, str(make(tmp))]


def _missing_dir(tmp: Path) -> Path:
    return tmp / "no" / "such" / "experiment"


def _good_parquet(tmp: Path) -> Path:
    return fx.write(tmp / "trials.parquet", ROWS)


def _parquet_bytes(data: bytes) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = tmp / "trials.parquet"
        path.write_bytes(data)
        return ["analyze", str(path)]

    return build


def _truncated_parquet(tmp: Path) -> list[str]:
    path = _good_parquet(tmp)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return ["analyze", str(path)]


def _empty_parquet(tmp: Path) -> list[str]:
    path = tmp / "trials.parquet"
    pq.write_table(TRIALS_SCHEMA.empty_table(), path)
    return ["analyze", str(path)]


def _short_parquet(tmp: Path) -> list[str]:
    path = tmp / "trials.parquet"
    table = fx.table(ROWS).drop_columns(["mode", "width", "depth", "seed", "status", "test_acc"])
    pq.write_table(table, path)
    return ["analyze", str(path)]


def _analyze_output_below_file(tmp: Path) -> list[str]:
    path = _good_parquet(tmp)
    _text_file(tmp, "a regular file\n", name="afile")
    return ["analyze", str(path), "-o", str(tmp / "afile" / "report")]


def _export_is_directory(table: str) -> Callable[[Path], list[str]]:
    """``export`` of a good experiment where ``table`` is a directory (with a file in it)."""

    def build(tmp: Path) -> list[str]:
        experiment = _experiment(tmp)
        (experiment / table).mkdir()
        fx.write(experiment / table / "part-0.parquet", ROWS)
        return ["export", str(experiment)]

    return build


def _resume_without_tuner(tmp: Path) -> list[str]:
    return ["resume", str(_experiment(tmp))]


def _args(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: list(args)


def _analyze_threshold(tmp: Path) -> list[str]:
    return ["analyze", str(_good_parquet(tmp)), "--threshold", "2"]


# --- the table ---------------------------------------------------------------------------


def case(
    name: str, build: Callable[[Path], list[str]], *fragments: str, bug: str | None = None
) -> Any:
    """One bad input: how to build it, and the pieces its one error line must contain.

    ``bug`` marks a case where qatsweep misbehaves today as a strict xfail, with the reason.
    """
    marks = [] if bug is None else [pytest.mark.xfail(strict=True, reason=bug)]
    return pytest.param(build, fragments, id=name, marks=marks)


CASES = [
    # Sweep files given to `run`.
    case("run-missing-file", _run_missing, "nope.yaml: no such sweep file"),
    case("run-empty-file", _run_text(""), "the sweep file is empty"),
    case("run-directory", _run_directory, "cannot read it as a sweep file", "Is a directory"),
    case("run-not-yaml", _run_text("name: smoke\ngrid: {mode: [nearest\n"), "not valid YAML"),
    case("run-yaml-list", _run_text("- name\n- grid\n"), "must be a mapping"),
    case("run-unknown-key", _run(colour="red"), "colour: unknown key"),
    case(
        "run-unknown-mode",
        _run(grid={"mode": ["nearest", "sideways"]}),
        "grid.mode[1]",
        "'sideways'",
    ),
    case("run-width-0", _run(grid={"width": [0]}), "grid.width[0]", "(got 0)"),
    case("run-empty-axis", _run(grid={"depth": []}), "grid.depth: an axis needs"),
    case("run-axis-not-list", _run(grid={"width": 8}), "grid.width:", "valid list"),
    case("run-bits-9", _run(bits=9), "bits:", "(got 9)"),
    case("run-negative-epochs", _run(epochs=-5), "epochs:", "(got -5)"),
    case("run-lr-0", _run(lr=0), "lr:", "(got 0)"),
    case("run-cpu-0", _run(resources={"cpu": 0}), "resources.cpu:", "(got 0)"),
    case("run-gpu-1.5", _run(resources={"gpu": 1.5}), "resources.gpu:", "whole number"),
    case("run-threads-set", _run(threads=2), "threads: set by resources.cpu"),
    case("run-bad-name", _run(name="../x"), "name:", "'../x'"),
    case("run-storage-below-file", _run_storage_below_file, "afile", "not a writable directory"),
    case("run-experiment-exists", _run_existing_experiment, "exists already", "qatsweep resume"),
    # `--set` values.
    case("set-missing-equals", _run_set("epochs200"), "'epochs200'", "expected KEY=VALUE"),
    case("set-invalid-yaml", _run_set("grid.width=[16,32"), "grid.width", "not valid YAML"),
    case("set-unknown-key", _run_set("colour=red"), "colour: unknown key"),
    case("set-through-scalar", _run_set("name.x=1"), "name is not a mapping"),
    case(
        "set-unknown-mode", _run_set("grid.mode=[nearest,sideways]"), "grid.mode[1]", "'sideways'"
    ),
    # Command-line arguments.
    case("train-mode-round", _args("train", "--mode", "round"), "--mode", "'round'"),
    case("train-width-0", _args("train", "--width", "0"), "width:", "(got '0')"),
    case("train-bits-1", _args("train", "--bits", "1"), "bits:", "(got '1')"),
    case("train-epochs-negative", _args("train", "--epochs", "-1"), "epochs:", "(got '-1')"),
    case("train-lr-0", _args("train", "--lr", "0"), "lr:", "(got '0')"),
    case("analyze-threshold-2", _analyze_threshold, "--threshold", "between 0 and 1"),
    case("unknown-subcommand", _args("frobnicate"), "invalid choice: 'frobnicate'"),
    case("run-without-sweep-file", _args("run"), "required: SWEEP.yaml"),
    # Directories given to `export`, `resume` and `analyze`.
    case("export-missing-dir", _on_dir("export", _missing_dir), "no such experiment directory"),
    case("resume-missing-dir", _on_dir("resume", _missing_dir), "no such experiment directory"),
    case("analyze-missing-dir", _on_dir("analyze", _missing_dir), "does not exist"),
    case("export-foreign-dir", _on_dir("export", _foreign), "no qatsweep.json"),
    case("resume-foreign-dir", _on_dir("resume", _foreign), "no qatsweep.json"),
    case("analyze-foreign-dir", _on_dir("analyze", _foreign), "neither a qatsweep experiment"),
    case("export-corrupt-json", _on_dir("export", _corrupt_metadata), *CORRUPT),
    case("resume-corrupt-json", _on_dir("resume", _corrupt_metadata), *CORRUPT),
    case("analyze-corrupt-json", _on_dir("analyze", _corrupt_metadata), *CORRUPT),
    case("resume-no-tuner-pkl", _resume_without_tuner, "no Tune state (tuner.pkl)"),
    # Parquet files given to `analyze`.
    case("parquet-random-bytes", _parquet_bytes(bytes(range(256)) * 8), NOT_PARQUET),
    case("parquet-truncated", _truncated_parquet, NOT_PARQUET),
    case("parquet-zero-rows", _empty_parquet, "is empty"),
    case(
        "parquet-missing-columns",
        _short_parquet,
        "lacks the columns the analysis needs: mode, width, depth, seed, status, test_acc",
    ),
    case("parquet-is-csv", _parquet_bytes(CSV), NOT_PARQUET),
    # Outputs that cannot be written.
    case(
        "analyze-output-below-file",
        _analyze_output_below_file,
        "cannot create the report directory",
        "afile",
    ),
    case(
        "export-trials-is-directory",
        _export_is_directory("trials.parquet"),
        "cannot write",
        "trials.parquet",
    ),
    case(
        "export-curves-is-directory",
        _export_is_directory("curves.parquet"),
        "cannot write",
        "curves.parquet",
    ),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file (relative path → sha256) and directory (→ ``"directory"``) below ``root``."""
    found: dict[str, str] = {}
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        for name in dirnames:
            found[str((here / name).relative_to(root)) + "/"] = "directory"
        for name in filenames:
            path = here / name
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize(("build", "fragments"), CASES)
def test_bad_input_is_one_line_and_changes_nothing(
    build: Callable[[Path], list[str]],
    fragments: tuple[str, ...],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    args = build(tmp_path)
    before = snapshot(tmp_path)
    home = tmp_path_factory.mktemp("home")  # outside tmp_path: Ray's state would go there

    result = run_cli(*args, cwd=tmp_path, env={"HOME": str(home)}, timeout=120)

    assert_one_line_error(result, *fragments)
    assert snapshot(tmp_path) == before, result.stderr
