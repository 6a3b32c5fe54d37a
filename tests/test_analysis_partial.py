"""Partial tables: errored, diverged, unfinished and repeated trials and missing cells."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from qatsweep.analysis import analyze
from qatsweep.analysis.report import render_report
from qatsweep.errors import ResultsError
from tests import analysis_fixtures as fx

#: Three modes at widths 4 and 8, depth 2, seeds 0 and 1: twelve trials.
ACC = {
    ("baseline", 4, 2): [0.75, 0.8125],
    ("baseline", 8, 2): [0.875, 0.9375],
    ("nearest", 4, 2): [0.6875, 0.75],
    ("nearest", 8, 2): [0.8125, 0.875],
    ("floor", 4, 2): [0.625, 0.6875],
    ("floor", 8, 2): [0.75, 0.8125],
}


def partial_rows() -> list[dict]:
    """The grid with floor/8/2/seed 1 missing, one trial errored and one diverged."""
    rows = []
    for row in fx.grid(ACC):
        key = (row["mode"], row["width"], row["seed"])
        if key == ("floor", 8, 1):
            continue
        if key == ("nearest", 4, 0):
            row.update(status="error", test_acc=None, error="RuntimeError: out of memory\n  at")
        if key == ("floor", 4, 1):
            row.update(status="diverged", test_acc=math.nan, loss=math.inf)
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return fx.summarize_rows(tmp_path_factory.mktemp("partial"), partial_rows())


def test_errored_and_diverged_trials_are_excluded_and_listed(summary: dict) -> None:
    assert summary["excluded"] == [
        {
            "trial_id": "nearest_w4_d2_s0",
            "mode": "nearest",
            "width": 4,
            "depth": 2,
            "seed": 0,
            "status": "error",
            "reason": "error: RuntimeError: out of memory",
        },
        {
            "trial_id": "floor_w4_d2_s1",
            "mode": "floor",
            "width": 4,
            "depth": 2,
            "seed": 1,
            "status": "diverged",
            "reason": "diverged",
        },
    ]
    assert (summary["n_trials"], summary["n_excluded"], summary["n_used"]) == (11, 2, 9)


def test_missing_cells_name_their_reason(summary: dict) -> None:
    assert summary["grid_cells"] == 12
    assert summary["missing_cells"] == [
        {"mode": "nearest", "width": 4, "depth": 2, "seed": 0, "reason": "excluded: error"},
        {"mode": "floor", "width": 4, "depth": 2, "seed": 1, "reason": "excluded: diverged"},
        {"mode": "floor", "width": 8, "depth": 2, "seed": 1, "reason": "no trial"},
    ]


def test_means_use_only_the_remaining_trials(summary: dict) -> None:
    modes = summary["modes"]
    assert {m: s["n"] for m, s in modes.items()} == {"baseline": 4, "nearest": 3, "floor": 2}
    assert modes["nearest"]["mean"] == (0.75 + 0.8125 + 0.875) / 3
    assert modes["floor"]["mean"] == (0.625 + 0.75) / 2
    # No configuration of floor keeps two seeds, so floor has no seed spread at all.
    assert modes["floor"]["seed_std"] is None
    assert modes["nearest"]["seed_std"] == pytest.approx(0.0625 / math.sqrt(2), rel=1e-15)


def test_pairs_use_only_cells_where_both_modes_have_a_result(summary: dict) -> None:
    pairs = {(p["a"], p["b"]): p for p in summary["pairs"]}
    assert {key: p["n"] for key, p in pairs.items()} == {
        ("baseline", "nearest"): 3,
        ("baseline", "floor"): 2,
        ("nearest", "floor"): 1,
    }
    assert pairs[("baseline", "floor")]["mean_diff"] == 0.125
    single = pairs[("nearest", "floor")]  # one cell: no interval to draw
    assert (single["mean_diff"], single["ci_low"], single["ci_high"]) == (0.0625, None, None)


def test_win_rate_counts_only_complete_cells(summary: dict) -> None:
    # nearest and floor both have a result only at width 8, seed 0, where nearest is higher.
    assert summary["wins"] == {"nearest": 1, "floor": 0, "tie": 0}
    assert summary["win_cells"] == 1


def test_report_lists_excluded_trials_and_missing_cells(summary: dict) -> None:
    report = render_report(summary)

    assert "| nearest_w4_d2_s0 | nearest | 4 | 2 | 0 | error | error: RuntimeError" in report
    assert "| floor_w4_d2_s1 | floor | 4 | 2 | 1 | diverged | diverged |" in report
    assert "| floor | 8 | 2 | 1 | no trial |" in report


def test_unfinished_and_accuracy_less_trials_are_excluded(tmp_path) -> None:
    rows = fx.grid(ACC)
    rows[0].update(status="running", test_acc=0.5)
    rows[1].update(status="pending", test_acc=None)
    rows[2].update(test_acc=None)

    summary = fx.summarize_rows(tmp_path, rows)

    assert [(t["trial_id"], t["reason"]) for t in summary["excluded"]] == [
        ("baseline_w4_d2_s0", "running"),
        ("baseline_w4_d2_s1", "pending"),
        ("baseline_w8_d2_s0", "finished without a finite test_acc"),
    ]
    assert summary["modes"]["baseline"]["n"] == 1


def test_a_repeated_trial_keeps_the_later_run(tmp_path) -> None:
    rows = fx.grid(ACC)
    rerun = {**rows[0], "trial_id": "rerun", "test_acc": 0.5}
    rerun["started_at"] = datetime(2025, 1, 2, tzinfo=timezone.utc)
    rows.insert(0, rerun)  # first in the table, but started later

    summary = fx.summarize_rows(tmp_path, rows)

    (excluded,) = summary["excluded"]
    assert excluded["trial_id"] == "baseline_w4_d2_s0"
    assert excluded["reason"] == (
        "repeat of the same mode, configuration and seed; kept trial rerun"
    )
    assert summary["modes"]["baseline"]["mean"] == (0.5 + 0.8125 + 0.875 + 0.9375) / 4
    assert summary["missing_cells"] == []


def test_a_table_without_one_usable_trial_is_an_error(tmp_path) -> None:
    rows = fx.grid({("nearest", 4, 2): [0.5, 0.5, 0.5]})
    rows[0].update(status="error", test_acc=None)
    rows[1].update(status="error", test_acc=None)
    rows[2].update(status="diverged", test_acc=math.nan)
    path = fx.write(tmp_path / "trials.parquet", rows)

    with pytest.raises(ResultsError, match=r"none of the 3 trials .*\(2 error, 1 diverged\)"):
        analyze(path, tmp_path / "report")


def test_a_search_that_is_no_grid_lists_no_missing_cells(tmp_path) -> None:
    """Random search over lr: every trial its own configuration, nothing to pair."""
    rows = fx.grid(ACC)
    for index, row in enumerate(rows):
        row["lr"] = 1e-4 * (1 + index)

    summary = fx.summarize_rows(tmp_path, rows)

    assert summary["axes"] == ["lr"]
    assert len(summary["groups"]) == len(rows)
    assert summary["missing_cells"] is None
    assert summary["grid_cells"] == 3 * 2 * 2 * len(rows)
    assert {p["n"] for p in summary["pairs"]} == {0}
    assert summary["verdict"].startswith("No two quantized modes share a cell")
