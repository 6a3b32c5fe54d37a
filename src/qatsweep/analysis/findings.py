"""The study's five findings, computed from the used trials of one section of the table.

Every function takes the ``used`` frame of :class:`qatsweep.analysis.clean.Trials` (or a
subset of it for one value of the extra axes) and the modes present in it, and returns
plain dictionaries and lists that go straight into ``summary.json``.

Definitions:

- accuracy is ``test_acc``, the held-out accuracy of the fake-quantized model;
- a *configuration* is one value of (extra axes, width, depth), the ``config`` label;
- a mode's *seed std* is the across-seed standard deviation of its accuracy within each
  configuration (sample std, ``ddof=1``), averaged over the configurations that have at
  least two seeds — the study's measure of consistency;
- means per depth or width are plain means over the trials there, so a gap or penalty is a
  difference of means; the matched-cell comparison is in :mod:`qatsweep.analysis.paired`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from scipy import stats

#: Confidence level of every interval in the report.
CONFIDENCE = 0.95

BASELINE = "baseline"
NEAREST = "nearest"


def quantized_modes(modes: list[str]) -> list[str]:
    """The modes that quantize, in order: every mode but ``baseline``."""
    return [mode for mode in modes if mode != BASELINE]


def mode_stats(used: pd.DataFrame, modes: list[str]) -> dict[str, dict[str, Any]]:
    """Finding 1: trials, mean accuracy, mean seed std and a CI of the mean, per mode.

    The interval is Student's t over the mode's trials; it says how well this grid pins
    the mode's mean down, treating the trials as independent draws.
    """
    per_config = used.groupby(["mode", "config"])["test_acc"].std(ddof=1)
    seed_std = per_config.groupby(level="mode").mean()

    result = {}
    for mode in modes:
        acc = used.loc[used["mode"] == mode, "test_acc"]
        low, high = mean_interval(acc)
        result[mode] = {
            "n": len(acc),
            "mean": acc.mean(),
            "seed_std": seed_std.get(mode),
            "ci_low": low,
            "ci_high": high,
        }
    return result


def mean_interval(values: pd.Series) -> tuple[float | None, float | None]:
    """The t interval of the mean of ``values``; ``None`` for fewer than two values."""
    if len(values) < 2:
        return None, None
    mean = float(values.mean())
    sem = float(stats.sem(values))
    if sem == 0:
        return mean, mean  # scipy answers NaN for a zero scale; the spread is truly zero
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def axis_table(used: pd.DataFrame, modes: list[str], axis: str) -> list[dict[str, Any]]:
    """Findings 2 and 5: mean accuracy per mode at each value of ``axis`` (depth or width).

    Each row also holds ``gap_vs_nearest`` (mode − nearest, when nearest is present) and
    ``penalty`` (baseline − mode, when baseline is present) for the quantized modes.
    """
    means = used.groupby([axis, "mode"])["test_acc"].mean().unstack("mode")
    means = means.reindex(columns=modes).sort_index()
    quantized = quantized_modes(modes)

    rows = []
    for value, mean in means.iterrows():
        row: dict[str, Any] = {axis: value, "mean": mean.to_dict()}
        if NEAREST in modes:
            row["gap_vs_nearest"] = {
                mode: mean[mode] - mean[NEAREST] for mode in quantized if mode != NEAREST
            }
        if BASELINE in modes:
            row["penalty"] = {mode: mean[BASELINE] - mean[mode] for mode in quantized}
        rows.append(row)
    return rows


def gap_slopes(by_depth: list[dict[str, Any]]) -> dict[str, float | None]:
    """Least-squares slope of each mode's gap against nearest, per layer of depth.

    A negative slope means the mode falls further behind nearest as the network deepens;
    ``None`` where fewer than two depths have a gap.
    """
    gaps = pd.DataFrame(
        {row["depth"]: row.get("gap_vs_nearest", {}) for row in by_depth}, dtype=float
    ).T
    slopes: dict[str, float | None] = {}
    for mode, gap in gaps.items():
        gap = gap.dropna()
        if gap.index.nunique() < 2:
            slopes[str(mode)] = None
            continue
        slopes[str(mode)] = float(stats.linregress(gap.index.astype(float), gap).slope)
    return slopes


def well_trained(used: pd.DataFrame, modes: list[str], threshold: float) -> dict[str, Any]:
    """Finding 3: how far apart the quantized modes are where the network learns well.

    A configuration counts as well trained when its mean accuracy over all its trials
    (every mode and seed) is strictly above ``threshold``. Selecting on all modes together,
    not on each mode, keeps the selection from favouring the mode being measured.
    """
    config_mean = used.groupby("config")["test_acc"].transform("mean")
    good = used[config_mean > threshold]
    means = good.groupby("mode")["test_acc"].mean().reindex(modes)
    quantized = means.reindex(quantized_modes(modes)).dropna()

    spread = len(quantized) >= 2
    return {
        "threshold": threshold,
        "configurations": good["config"].nunique(),
        "of_configurations": used["config"].nunique(),
        "trials": len(good),
        "mean": means.to_dict(),
        "range": quantized.max() - quantized.min() if spread else None,
        "highest": quantized.idxmax() if spread else None,
        "lowest": quantized.idxmin() if spread else None,
    }


def win_counts(used: pd.DataFrame, modes: list[str]) -> tuple[dict[str, int], int]:
    """Finding 4: in how many cells each quantized mode is best outright, and the ties.

    A cell (configuration and seed) counts only when every quantized mode has a result
    there, since a mode must not win because a rival is missing. The best mode wins only if
    no other quantized mode has exactly the same accuracy; otherwise the cell is a tie.

    Returns:
        ``(counts, cells)``: counts per quantized mode and ``"tie"``, and the number of
        complete cells. With fewer than two quantized modes nothing is counted.
    """
    quantized = quantized_modes(modes)
    counts = dict.fromkeys([*quantized, "tie"], 0)
    if len(quantized) < 2:
        return counts, 0

    wide = used.pivot(index="cell", columns="mode", values="test_acc")
    wide = wide.reindex(columns=quantized).dropna()
    at_best = wide.eq(wide.max(axis=1), axis=0)
    outright = at_best.sum(axis=1) == 1

    for mode, wins in at_best[outright].idxmax(axis=1).value_counts().items():
        counts[str(mode)] = int(wins)
    counts["tie"] = int((~outright).sum())
    return counts, len(wide)
