"""The written report: files, readings and plots, one set of findings per extra axis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qatsweep.analysis import analyze
from qatsweep.cli import main
from tests import analysis_fixtures as fx

MODES = ("baseline", "nearest", "floor", "ceil")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def accuracy(mode: str, width: int, depth: int, seed: int, bits: int) -> float:
    """Dyadic accuracies: floor always behind nearest, ceil level with it on seed 0 only."""
    base = 0.5 + width / 64 - depth / 32 + seed / 64 - (8 - bits) / 32
    offset = {"baseline": 0.0625, "nearest": 0.0, "floor": -0.0625 - depth / 64}
    return base + offset.get(mode, -seed / 32)


def rows_for(bits: int) -> list[dict]:
    return [
        fx.trial(mode, width, depth, seed, accuracy(mode, width, depth, seed, bits), bits=bits)
        for mode in MODES
        for width in (4, 8)
        for depth in (2, 4)
        for seed in (0, 1)
    ]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("report")
    path = fx.write(root / "trials.parquet", rows_for(4) + rows_for(8))
    return analyze(path, root / "report"), root / "report"


def test_extra_axis_gives_one_set_of_findings_per_value(analysed, tmp_path: Path) -> None:
    summary, _ = analysed
    assert summary["axes"] == ["bits"]
    assert [group["group"] for group in summary["groups"]] == [{"bits": 4}, {"bits": 8}]

    for group in summary["groups"]:
        alone = fx.summarize_rows(tmp_path, rows_for(group["group"]["bits"]))
        for key in ("modes", "wins", "pairs", "by_depth", "by_width", "well_trained"):
            assert group[key] == alone[key], key
        assert group["verdict"] == alone["verdict"]


def test_pooled_findings_pair_within_each_bit_width(analysed) -> None:
    summary, _ = analysed
    assert summary["n_used"] == 64
    assert {(p["a"], p["b"]): p["n"] for p in summary["pairs"]} == {
        pair: 16 for pair in [(a, b) for i, a in enumerate(MODES) for b in MODES[i + 1 :]]
    }
    assert summary["wins"] == {"nearest": 8, "floor": 0, "ceil": 0, "tie": 8}
    assert summary["modes"]["nearest"]["n"] == 16


def test_summary_json_is_what_analyze_returns(analysed) -> None:
    summary, report_dir = analysed
    assert json.loads((report_dir / "summary.json").read_text()) == summary


def test_plots_are_pngs_embedded_in_the_report(analysed) -> None:
    summary, report_dir = analysed
    report = (report_dir / "report.md").read_text()
    plots = [summary["plots"], *(group["plots"] for group in summary["groups"])]

    assert [sorted(p) for p in plots] == [["heatmap", "paired_vs_nearest", "penalty"]] * 3
    assert plots[1]["heatmap"] == "heatmap_1_bits-4.png"
    for name in (name for section in plots for name in section.values()):
        assert (report_dir / name).read_bytes().startswith(PNG_MAGIC)
        assert f"]({name})" in report


def test_report_holds_every_reading_and_verdict(analysed) -> None:
    summary, report_dir = analysed
    report = (report_dir / "report.md").read_text()

    assert "## All trials (pooled over bits)" in report
    assert "## bits = 4" in report and "## bits = 8" in report
    for section in [summary, *summary["groups"]]:
        for reading in section["readings"].values():
            assert reading in report
        assert section["verdict"] in report


def test_readings_follow_the_numbers(analysed) -> None:
    summary, _ = analysed
    readings = summary["readings"]

    assert readings["wins"] == (
        "Over 16 complete (configuration, seed) cells, nearest wins 8 (50%), floor wins 0 "
        "(0%), ceil wins 0 (0%), and 8 (50%) are ties."
    )
    assert readings["modes"].startswith("baseline has the highest mean test accuracy")
    assert (
        "floor − nearest goes from -0.0938 at depth 2 to -0.1250 at depth 4"
        in (readings["by_depth"])
    )
    assert summary["verdict"].startswith("The rounding rule makes a detectable difference")
    assert "nearest beats floor by 0.1094 over 16 cells" in summary["verdict"]


def test_no_temporary_files_are_left_behind(analysed) -> None:
    _, report_dir = analysed
    assert not [path.name for path in report_dir.iterdir() if path.name.startswith(".")]


def test_cli_prints_the_report_path(tmp_path: Path, capsys) -> None:
    path = fx.write(tmp_path / "trials.parquet", rows_for(8)[:16])  # baseline and nearest

    assert main(["analyze", str(path)]) == 0

    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "report" / "report.md")
    assert (tmp_path / "report" / "summary.json").is_file()


def test_resource_columns_do_not_split_the_findings(tmp_path: Path) -> None:
    """A GPU override for the widest models makes device vary: still one set of findings."""
    accuracies = {(m, w, 2): [0.75, 0.8125] for m in ("nearest", "floor") for w in (8, 128)}
    rows = [
        {**row, "device": "cuda" if row["width"] == 128 else "cpu",
         "threads": 2 if row["width"] == 128 else 1}
        for row in fx.grid(accuracies)
    ]
    summary = fx.summarize_rows(tmp_path, rows)
    assert summary["axes"] == [] and summary["groups"] == []
    assert summary["modes"]["nearest"]["n"] == 4
