"""Bad input gets a one-line error and exit code 2; good input is found where it lies."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qatsweep.analysis import analyze
from qatsweep.analysis.load import load_trials
from qatsweep.cli import main
from qatsweep.errors import ConfigError, ResultsError
from qatsweep.schema import TRIALS_SCHEMA
from tests import analysis_fixtures as fx

ROWS = fx.grid({("nearest", 4, 2): [0.75, 0.8125], ("floor", 4, 2): [0.6875, 0.75]})


def _corrupt(directory: Path) -> Path:
    path = fx.write(directory / "corrupt.parquet", ROWS)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text(directory: Path) -> Path:
    path = directory / "trials.csv"
    path.write_text("mode,width,depth,seed,status,test_acc\nnearest,4,2,0,finished,0.5\n")
    return path


def _empty(directory: Path) -> Path:
    path = directory / "empty.parquet"
    pq.write_table(TRIALS_SCHEMA.empty_table(), path)
    return path


def _no_columns(directory: Path) -> Path:
    path = directory / "short.parquet"
    pq.write_table(fx.table(ROWS).drop_columns(["seed", "test_acc"]), path)
    return path


def _wrong_type(directory: Path) -> Path:
    path = directory / "typed.parquet"
    table = fx.table(ROWS)
    index = table.schema.get_field_index("test_acc")
    as_text = pa.array([str(value) for value in table["test_acc"].to_pylist()])
    pq.write_table(table.set_column(index, "test_acc", as_text), path)
    return path


def _missing(directory: Path) -> Path:
    return directory / "no" / "such" / "trials.parquet"


def _neither(directory: Path) -> Path:
    (directory / "stuff").mkdir()
    (directory / "stuff" / "notes.txt").write_text("not an experiment")
    return directory / "stuff"


#: Each bad input, and a piece of the message it must give.
BAD_INPUTS = {
    "corrupt": (_corrupt, "is not a readable Parquet file"),
    "not-parquet": (_text, "is not a readable Parquet file"),
    "empty": (_empty, "is empty: it has no trials"),
    "missing-columns": (_no_columns, "lacks the columns the analysis needs: seed, test_acc"),
    "wrong-type": (_wrong_type, "column 'test_acc' .* has type string"),
    "missing-path": (_missing, "does not exist"),
    "neither": (_neither, "holds neither a qatsweep experiment"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_results_error(tmp_path: Path, case: str) -> None:
    make, message = BAD_INPUTS[case]
    with pytest.raises(ResultsError, match=message):
        load_trials(make(tmp_path))


#: The inputs the CLI is run on as a real subprocess (the others share its code path).
CLI_CASES = ["corrupt", "not-parquet", "empty", "missing-columns", "missing-path"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """Run ``python -m qatsweep analyze`` on every bad input, all at once.

    Each interpreter spends seconds importing the package, so the runs go in parallel.
    """
    processes = {}
    for case in CLI_CASES:
        make, _ = BAD_INPUTS[case]
        directory = tmp_path_factory.mktemp(case)
        command = [sys.executable, "-m", "qatsweep", "analyze", str(make(directory))]
        processes[case] = subprocess.Popen(
            [*command, "-o", str(directory / "report")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for case, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        results[case] = (process.returncode, stderr)
    return results


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_gives_one_line_and_exit_code_2(cli_runs: dict, case: str) -> None:
    returncode, stderr = cli_runs[case]
    assert returncode == 2
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("qatsweep: error: ")
    assert re.search(BAD_INPUTS[case][1], stderr)


def test_cli_rejects_a_threshold_outside_zero_to_one(capsys, tmp_path: Path) -> None:
    path = fx.write(tmp_path / "trials.parquet", ROWS)
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", str(path), "--threshold", "70"])
    assert exit_info.value.code == 2
    assert "--threshold: must lie between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 1.5}, "threshold must lie between 0 and 1"),
        ({"threshold": float("nan")}, "threshold must be a number"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
    ids=["threshold-high", "threshold-nan", "seed-negative"],
)
def test_analyze_checks_its_options(tmp_path: Path, options: dict, message: str) -> None:
    path = fx.write(tmp_path / "trials.parquet", ROWS)
    with pytest.raises(ConfigError, match=message):
        analyze(path, tmp_path / "report", **options)


def test_report_directory_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    path = fx.write(tmp_path / "trials.parquet", ROWS)
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="cannot create the report directory"):
        analyze(path, tmp_path / "taken")


def test_directory_with_trials_parquet_is_read(tmp_path: Path) -> None:
    fx.write(tmp_path / "trials.parquet", ROWS)
    assert len(load_trials(tmp_path)) == len(ROWS)


def test_experiment_directory_is_exported_afresh(tmp_path: Path, monkeypatch) -> None:
    """An experiment's own tables are rebuilt: a trials.parquet there may be out of date."""
    calls = []

    def build_tables(directory: Path) -> tuple[pa.Table, pa.Table]:
        calls.append(directory)
        return fx.table(ROWS), pa.table({})

    fake = types.ModuleType("qatsweep.export")
    fake.build_tables = build_tables  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "qatsweep.export", fake)
    (tmp_path / "qatsweep.json").write_text("{}")
    fx.write(tmp_path / "trials.parquet", ROWS[:2])  # stale

    assert len(load_trials(tmp_path)) == len(ROWS)
    assert calls == [tmp_path]
