"""Paired comparisons of modes over matched cells: the part the study left out.

Within one seed every mode sees the same data and the same initial weights, so two modes
are compared cell by cell (configuration and seed) on the difference ``a − b`` of their
``test_acc``. A pair uses every cell where both modes have a result, so one missing trial
costs that pair one cell and leaves the other pairs whole.

- The interval of the mean difference is a percentile bootstrap: 10,000 resamples of the
  differences drawn with ``numpy.random.default_rng(seed)``, a fresh generator per pair so
  that a pair's interval does not depend on which other modes are in the table. The
  differences are taken in cell order (extra axes, width, depth, seed), which fixes the
  draws: the same table and seed give the same interval to the last bit.
- The p-value is scipy's Wilcoxon signed-rank test with its defaults (zero differences are
  dropped, two-sided). When every difference is zero there is nothing to rank; scipy then
  warns or fails, and the p-value is 1.0 by definition here.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from qatsweep.analysis.findings import CONFIDENCE, NEAREST

#: Bootstrap resamples per pair.
RESAMPLES = 10_000


def paired_stats(used: pd.DataFrame, modes: list[str], seed: int) -> list[dict[str, Any]]:
    """Mean difference, bootstrap CI, win/tie/loss counts and Wilcoxon p for every pair.

    Pairs follow the order of ``modes`` (baseline first), ``a`` before ``b``; a positive
    ``mean_diff`` means ``a`` scores higher.
    """
    wide = matched(used, modes)
    return [compare(wide[a], wide[b], seed) for a, b in combinations(modes, 2)]


def matched(used: pd.DataFrame, modes: list[str]) -> pd.DataFrame:
    """Accuracy with one row per cell and one column per mode (NaN where missing)."""
    return used.pivot(index="cell", columns="mode", values="test_acc").reindex(columns=modes)


def compare(a: pd.Series, b: pd.Series, seed: int) -> dict[str, Any]:
    """The paired statistics of ``a − b`` over the cells where both have a result."""
    diff = (a - b).dropna().to_numpy()
    low, high = bootstrap_interval(diff, seed)
    return {
        "a": a.name,
        "b": b.name,
        "n": len(diff),
        "mean_diff": float(diff.mean()) if len(diff) else None,
        "ci_low": low,
        "ci_high": high,
        "p_value": signed_rank_p(diff),
        "wins": int((diff > 0).sum()),
        "ties": int((diff == 0).sum()),
        "losses": int((diff < 0).sum()),
    }


def bootstrap_interval(diff: np.ndarray, seed: int) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean of ``diff``; ``None`` below two cells."""
    if len(diff) < 2:
        return None, None
    result = stats.bootstrap(
        (diff,),
        np.mean,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def signed_rank_p(diff: np.ndarray) -> float | None:
    """Wilcoxon signed-rank p-value of ``diff``: 1.0 when all are zero, ``None`` if empty."""
    if len(diff) == 0:
        return None
    if not np.any(diff):
        return 1.0
    return float(stats.wilcoxon(diff).pvalue)


def differences_vs_nearest(used: pd.DataFrame, modes: list[str]) -> dict[str, np.ndarray]:
    """Per mode other than nearest, its paired differences ``mode − nearest`` (for plots)."""
    if NEAREST not in modes:
        return {}
    wide = matched(used, modes)
    return {
        mode: (wide[mode] - wide[NEAREST]).dropna().to_numpy() for mode in modes if mode != NEAREST
    }
