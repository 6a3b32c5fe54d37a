"""Every number of ``summary.json`` for a hand-built table whose answers are known.

The table: modes baseline, nearest, floor and ceil; widths 4 and 8; depths 2 and 4; seeds
0 and 1. Each configuration has a base accuracy; baseline sits 1/16 above it on both seeds,
nearest ∓1/16 around it, ceil 1/16 below with ±1/8 the other way round, and floor ±1/8
around an offset that grows with depth, except at width 8 depth 4. All values are
multiples of 1/16, so means and differences are exact and compared with ``==``.
"""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from qatsweep.analysis import analyze
from tests import analysis_fixtures as fx

#: test_acc of seeds 0 and 1, per (mode, width, depth).
ACC: dict[tuple[str, int, int], list[float]] = {
    ("baseline", 4, 2): [0.8125, 0.8125],
    ("baseline", 4, 4): [0.5625, 0.5625],
    ("baseline", 8, 2): [0.9375, 0.9375],
    ("baseline", 8, 4): [0.6875, 0.6875],
    ("nearest", 4, 2): [0.6875, 0.8125],
    ("nearest", 4, 4): [0.4375, 0.5625],
    ("nearest", 8, 2): [0.8125, 0.9375],
    ("nearest", 8, 4): [0.5625, 0.6875],
    ("floor", 4, 2): [0.5625, 0.8125],
    ("floor", 4, 4): [0.1875, 0.4375],
    ("floor", 8, 2): [0.6875, 0.9375],
    ("floor", 8, 4): [0.5000, 0.7500],
    ("ceil", 4, 2): [0.8125, 0.5625],
    ("ceil", 4, 4): [0.5625, 0.3125],
    ("ceil", 8, 2): [0.9375, 0.6875],
    ("ceil", 8, 4): [0.6875, 0.4375],
}
MODES = ["baseline", "nearest", "floor", "ceil"]
SQRT2 = math.sqrt(2)


def cell_values(mode: str) -> list[float]:
    """The mode's accuracies in the analysis' cell order: width, depth, then seed."""
    return [acc for (m, _, _), per_seed in sorted(ACC.items()) if m == mode for acc in per_seed]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Analyse the table once and read back the written ``summary.json``."""
    root = tmp_path_factory.mktemp("summary")
    returned = analyze(fx.write(root / "trials.parquet", fx.grid(ACC)), root / "report")
    written = json.loads((root / "report" / "summary.json").read_text())
    assert written == returned
    return written


def test_per_mode_means_and_seed_std(summary: dict) -> None:
    modes = summary["modes"]
    assert list(modes) == MODES
    assert {m: modes[m]["n"] for m in MODES} == dict.fromkeys(MODES, 8)
    assert {m: modes[m]["mean"] for m in MODES} == {
        "baseline": 0.75,
        "nearest": 0.6875,
        "floor": 0.609375,
        "ceil": 0.625,
    }
    # ddof=1 over two seeds: |a - b| / sqrt(2) in every configuration.
    assert modes["baseline"]["seed_std"] == 0.0
    assert modes["nearest"]["seed_std"] == pytest.approx(0.125 / SQRT2, rel=1e-15)
    assert modes["floor"]["seed_std"] == pytest.approx(0.25 / SQRT2, rel=1e-15)
    assert modes["ceil"]["seed_std"] == pytest.approx(0.25 / SQRT2, rel=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_mode_interval_is_the_t_interval_of_its_trials(summary: dict, mode: str) -> None:
    values = cell_values(mode)
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    assert summary["modes"][mode]["ci_low"] == pytest.approx(low, rel=1e-12)
    assert summary["modes"][mode]["ci_high"] == pytest.approx(high, rel=1e-12)


def test_depth_means_gaps_and_slope(summary: dict) -> None:
    assert summary["by_depth"] == [
        {
            "depth": 2,
            "mean": {"baseline": 0.875, "nearest": 0.8125, "floor": 0.75, "ceil": 0.75},
            "gap_vs_nearest": {"floor": -0.0625, "ceil": -0.0625},
            "penalty": {"nearest": 0.0625, "floor": 0.125, "ceil": 0.125},
        },
        {
            "depth": 4,
            "mean": {"baseline": 0.625, "nearest": 0.5625, "floor": 0.46875, "ceil": 0.5},
            "gap_vs_nearest": {"floor": -0.09375, "ceil": -0.0625},
            "penalty": {"nearest": 0.0625, "floor": 0.15625, "ceil": 0.125},
        },
    ]
    assert summary["depth_gap_slope"] == {"floor": -0.015625, "ceil": 0.0}


def test_width_penalties(summary: dict) -> None:
    assert [row["width"] for row in summary["by_width"]] == [4, 8]
    assert [row["penalty"] for row in summary["by_width"]] == [
        {"nearest": 0.0625, "floor": 0.1875, "ceil": 0.125},
        {"nearest": 0.0625, "floor": 0.09375, "ceil": 0.125},
    ]
    assert summary["by_width"][1]["mean"] == {
        "baseline": 0.8125,
        "nearest": 0.75,
        "floor": 0.71875,
        "ceil": 0.6875,
    }


def test_well_trained_configurations(summary: dict) -> None:
    # Configuration means over all modes and seeds: (4, 2) 0.734375 and (8, 2) 0.859375
    # are above 0.70; (4, 4) 0.453125 and (8, 4) 0.625 are not.
    assert summary["well_trained"] == {
        "threshold": 0.7,
        "configurations": 2,
        "of_configurations": 4,
        "trials": 16,
        "mean": {"baseline": 0.875, "nearest": 0.8125, "floor": 0.75, "ceil": 0.75},
        "range": 0.0625,
        "highest": "nearest",
        "lowest": "floor",  # floor and ceil share the lowest mean: the first mode is named
    }


def test_win_counts_with_ties(summary: dict) -> None:
    # Seed 0: ceil is best outright everywhere. Seed 1: (4, 2) and (8, 2) are nearest/floor
    # ties, nearest wins (4, 4), floor wins (8, 4).
    assert summary["wins"] == {"nearest": 1, "floor": 1, "ceil": 4, "tie": 2}
    assert summary["win_cells"] == 8


def test_pairs_cover_every_pair_of_modes(summary: dict) -> None:
    assert [(p["a"], p["b"]) for p in summary["pairs"]] == list(combinations(MODES, 2))
    assert {(p["a"], p["b"]): p["mean_diff"] for p in summary["pairs"]} == {
        ("baseline", "nearest"): 0.0625,
        ("baseline", "floor"): 0.140625,
        ("baseline", "ceil"): 0.125,
        ("nearest", "floor"): 0.078125,
        ("nearest", "ceil"): 0.0625,
        ("floor", "ceil"): -0.015625,
    }


@pytest.mark.parametrize("pair", list(combinations(MODES, 2)), ids="-".join)
def test_pair_counts_interval_and_p_value(summary: dict, pair: tuple[str, str]) -> None:
    """Against an independent computation from ACC: counts, bootstrap and scipy's test."""
    got = next(p for p in summary["pairs"] if (p["a"], p["b"]) == pair)
    diff = np.subtract(cell_values(pair[0]), cell_values(pair[1]))

    assert got["n"] == 8
    assert (got["wins"], got["ties"], got["losses"]) == (
        int((diff > 0).sum()),
        int((diff == 0).sum()),
        int((diff < 0).sum()),
    )
    assert got["p_value"] == stats.wilcoxon(diff).pvalue

    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), (10_000, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high), rel=1e-12)


def test_nearest_floor_counts_by_hand(summary: dict) -> None:
    # nearest − floor per cell: 0.125, 0, 0.25, 0.125, 0.125, 0, 0.0625, −0.0625.
    got = next(p for p in summary["pairs"] if (p["a"], p["b"]) == ("nearest", "floor"))
    assert (got["wins"], got["ties"], got["losses"]) == (5, 2, 1)


def test_bootstrap_repeats_under_its_seed(tmp_path, summary: dict) -> None:
    again = fx.summarize_rows(tmp_path, fx.grid(ACC), seed=0)
    other = fx.summarize_rows(tmp_path, fx.grid(ACC), seed=1)

    intervals = [(p["ci_low"], p["ci_high"]) for p in summary["pairs"]]
    assert [(p["ci_low"], p["ci_high"]) for p in again["pairs"]] == intervals
    assert [(p["ci_low"], p["ci_high"]) for p in other["pairs"]] != intervals
    assert [p["p_value"] for p in other["pairs"]] == [p["p_value"] for p in summary["pairs"]]


def test_identical_modes_have_p_value_one(tmp_path) -> None:
    """Every paired difference zero: scipy cannot rank them, the answer is p = 1."""
    same = {("nearest", w, d): v for (m, w, d), v in ACC.items() if m == "nearest"}
    copy = {("half_away", w, d): v for (_, w, d), v in same.items()}
    summary = fx.summarize_rows(tmp_path, fx.grid(same | copy))

    (pair,) = summary["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("nearest", "half_away", 8)
    assert (pair["mean_diff"], pair["ci_low"], pair["ci_high"]) == (0.0, 0.0, 0.0)
    assert (pair["p_value"], pair["wins"], pair["ties"], pair["losses"]) == (1.0, 0, 8, 0)
    assert summary["wins"] == {"nearest": 0, "half_away": 0, "tie": 8}


def test_nothing_is_excluded_or_missing(summary: dict) -> None:
    assert summary["excluded"] == []
    assert summary["missing_cells"] == []
    assert (summary["n_trials"], summary["n_used"], summary["grid_cells"]) == (32, 32, 32)
    assert summary["axes"] == []
    assert summary["groups"] == []
