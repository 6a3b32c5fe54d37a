"""One-sentence readings of each finding and the verdict paragraph, written from the numbers.

Every sentence is built from a section of the summary (see
:mod:`qatsweep.analysis.summary`), so the text can never disagree with the tables. A pair
of modes differs *detectably* when its 95% bootstrap interval excludes zero and its
Wilcoxon p-value is below ``ALPHA``; the p-values are not adjusted for the number of pairs,
and the verdict says so.
"""

from __future__ import annotations

from typing import Any

from qatsweep.analysis.findings import BASELINE

#: Significance level of the verdict.
ALPHA = 0.05


def readings(section: dict[str, Any]) -> dict[str, str]:
    """The reading of each of the five findings of ``section``, keyed like the summary."""
    return {
        "modes": read_modes(section["modes"]),
        "by_depth": read_depth(section["by_depth"], section["depth_gap_slope"]),
        "well_trained": read_well_trained(section["well_trained"]),
        "wins": read_wins(section["wins"], section["win_cells"]),
        "by_width": read_width(section["by_width"]),
    }


def read_modes(modes: dict[str, dict[str, Any]]) -> str:
    """One sentence on finding 1: best and worst mode, steadiest and least steady."""
    means = {mode: stats["mean"] for mode, stats in modes.items()}
    top, top_mean = _extreme(means, highest=True)
    if len(means) == 1:
        text = f"Only {top[0]} is present, with a mean test accuracy of {_acc(top_mean)}"
    elif len(set(means.values())) == 1:
        text = f"Every mode has the same mean test accuracy ({_acc(top_mean)})"
    else:
        low, low_mean = _extreme(means, highest=False)
        text = (
            f"{_names(top)} {_has(top)} the highest mean test accuracy ({_acc(top_mean)}"
            f"{_ci(modes[top[0]], len(top))}) and {_names(low)} the lowest ({_acc(low_mean)}"
            f"{_ci(modes[low[0]], len(low))})"
        )

    stds = {mode: s["seed_std"] for mode, s in modes.items() if s["seed_std"] is not None}
    if not stds:
        return text + "; no configuration has two seeds, so there is no seed spread."
    steady, steady_std = _extreme(stds, highest=False)
    shaky, shaky_std = _extreme(stds, highest=True)
    if len(stds) == 1:
        return text + f"; {steady[0]}'s mean seed std is {_acc(steady_std)}."
    if steady_std == shaky_std:
        return text + f"; every mode has the same mean seed std ({_acc(steady_std)})."
    return text + (
        f"; {_names(steady)} {_varies(steady)} least across seeds (mean seed std "
        f"{_acc(steady_std)}) and {_names(shaky)} most ({_acc(shaky_std)})."
    )


def read_depth(by_depth: list[dict[str, Any]], slopes: dict[str, float | None]) -> str:
    """One sentence on finding 2: how each gap against nearest moves with depth."""
    if not by_depth or "gap_vs_nearest" not in by_depth[0]:
        return "There are no nearest trials, so there are no gaps against nearest."
    if not slopes:
        return "nearest is the only quantized mode, so there are no gaps against it."

    parts = []
    for mode, slope in slopes.items():
        gaps = [(row["depth"], row["gap_vs_nearest"][mode]) for row in by_depth]
        gaps = [(depth, gap) for depth, gap in gaps if gap is not None]
        if not gaps:
            parts.append(f"{mode} and nearest never share a depth")
        elif slope is None:
            parts.append(f"{mode} − nearest is {_diff(gaps[0][1])} at depth {gaps[0][0]}")
        else:
            (first_depth, first), (last_depth, last) = gaps[0], gaps[-1]
            mean_gap = sum(gap for _, gap in gaps) / len(gaps)
            trend = "widening" if slope * mean_gap > 0 else "narrowing" if slope else "flat"
            parts.append(
                f"{mode} − nearest goes from {_diff(first)} at depth {first_depth} to "
                f"{_diff(last)} at depth {last_depth} (slope {slope:+.5f} per layer, {trend})"
            )
    return "; ".join(parts) + "."


def read_well_trained(well: dict[str, Any]) -> str:
    """One sentence on finding 3: how far apart the quantized modes are when training works."""
    above = f"{well['threshold']:.2f}"
    if well["configurations"] == 0:
        return f"No configuration averages above {above} test accuracy, so this finding is empty."
    count = f"{well['configurations']} of {well['of_configurations']} configurations"
    if well["range"] is None:
        return f"{count} average above {above}; with under two quantized modes there is no range."
    return (
        f"{count} average above {above}; among them the quantized modes' means span "
        f"{_acc(well['range'])}, from {well['lowest']} ({_acc(well['mean'][well['lowest']])}) "
        f"to {well['highest']} ({_acc(well['mean'][well['highest']])})."
    )


def read_wins(wins: dict[str, int], cells: int) -> str:
    """One sentence on finding 4: outright wins per quantized mode and ties."""
    quantized = [mode for mode in wins if mode != "tie"]
    if len(quantized) < 2:
        return "With fewer than two quantized modes there is no win rate."
    if cells == 0:
        return "No cell has a result for every quantized mode, so there is no win rate."
    parts = [f"{mode} wins {wins[mode]} ({wins[mode] / cells:.0%})" for mode in quantized]
    return (
        f"Over {cells} complete (configuration, seed) {'cell' if cells == 1 else 'cells'}, "
        f"{', '.join(parts)}, and {wins['tie']} ({wins['tie'] / cells:.0%}) "
        f"{'is a tie' if wins['tie'] == 1 else 'are ties'}."
    )


def read_width(by_width: list[dict[str, Any]]) -> str:
    """One sentence on finding 5: where the quantization penalty is largest and smallest."""
    if not by_width or "penalty" not in by_width[0]:
        return "There are no baseline trials, so there is no quantization penalty."
    penalties = [
        (row["width"], mode, penalty)
        for row in by_width
        for mode, penalty in row["penalty"].items()
        if penalty is not None
    ]
    if not penalties:
        return "No width has both baseline and quantized trials, so there is no penalty."

    high = max(penalties, key=lambda item: item[2])
    low = min(penalties, key=lambda item: item[2])
    if high[2] == low[2]:
        return f"The quantization penalty (baseline − mode) is {_diff(high[2])} throughout."
    text = (
        f"The quantization penalty (baseline − mode) is largest for {high[1]} at width "
        f"{high[0]} ({_diff(high[2])}) and smallest for {low[1]} at width {low[0]} "
        f"({_diff(low[2])})"
    )

    per_width: dict[Any, list[float]] = {}
    for width, _, penalty in penalties:
        per_width.setdefault(width, []).append(penalty)
    averages = [(width, sum(p) / len(p)) for width, p in per_width.items()]
    if len(averages) == 1:
        return text + "."
    (first_width, first), (last_width, last) = averages[0], averages[-1]
    return text + (
        f"; averaged over the quantized modes it goes from {_diff(first)} at width "
        f"{first_width} to {_diff(last)} at width {last_width}."
    )


def verdict(section: dict[str, Any]) -> str:
    """The answer to the rounding question for one section, from its paired statistics."""
    rounding = [p for p in section["pairs"] if BASELINE not in (p["a"], p["b"])]
    against_baseline = [p for p in section["pairs"] if p["a"] == BASELINE and p["n"]]
    return _rounding_verdict(rounding) + _baseline_verdict(against_baseline)


def detectable(pair: dict[str, Any]) -> bool:
    """Whether a pair's CI excludes zero and its Wilcoxon p-value is below ``ALPHA``."""
    if pair["ci_low"] is None or pair["p_value"] is None:
        return False
    return (pair["ci_low"] > 0 or pair["ci_high"] < 0) and pair["p_value"] < ALPHA


def _rounding_verdict(pairs: list[dict[str, Any]]) -> str:
    if not pairs:
        return "With fewer than two quantized modes, this table cannot say whether the " + (
            "rounding rule matters."
        )
    pairs = [pair for pair in pairs if pair["n"]]
    if not pairs:
        return "No two quantized modes share a cell (configuration and seed), so this " + (
            "table cannot compare rounding rules."
        )

    rule = f"95% bootstrap CI of the paired mean difference excludes zero and Wilcoxon p < {ALPHA}"
    if len(pairs) > 1:
        rule += f", not adjusted for the {len(pairs)} comparisons"
    differ = [p for p in pairs if detectable(p)]
    rest = [p for p in pairs if not detectable(p)]
    names = ", ".join(f"{p['a']}/{p['b']}" for p in rest)
    largest = max((abs(p["mean_diff"]) for p in rest), default=0.0)

    if not differ:
        return (
            f"The rounding rule makes no detectable difference here: no pair of quantized "
            f"modes ({names}) passes the test ({rule}); the largest mean paired difference "
            f"is {_acc(largest)}."
        )
    text = (
        f"The rounding rule makes a detectable difference in {len(differ)} of {len(pairs)} "
        f"pairs of quantized modes ({rule}): {'; '.join(map(_describe, differ))}."
    )
    if rest:
        text += (
            f" The other pairs ({names}) show no detectable difference; the largest of their "
            f"mean differences is {_acc(largest)}."
        )
    return text


def _baseline_verdict(pairs: list[dict[str, Any]]) -> str:
    """What quantizing costs against the float model, from the baseline − mode pairs."""
    if not pairs:
        return ""
    high = max(pairs, key=lambda p: p["mean_diff"])
    low = min(pairs, key=lambda p: p["mean_diff"])
    if len(pairs) == 1:
        return (
            f" Against the float baseline, {high['b']} loses {_diff(high['mean_diff'])} of "
            f"test accuracy on average over {high['n']} matched cells."
        )
    if high["mean_diff"] == low["mean_diff"]:
        return (
            f" Against the float baseline, every quantized mode loses "
            f"{_diff(high['mean_diff'])} of test accuracy on average over matched cells."
        )
    return (
        f" Against the float baseline, the quantized modes lose between "
        f"{_diff(low['mean_diff'])} ({low['b']}) and {_diff(high['mean_diff'])} "
        f"({high['b']}) of test accuracy on average over matched cells."
    )


def _describe(pair: dict[str, Any]) -> str:
    ahead, behind = (pair["a"], pair["b"]) if pair["mean_diff"] > 0 else (pair["b"], pair["a"])
    return (
        f"{ahead} beats {behind} by {_acc(abs(pair['mean_diff']))} over {pair['n']} cells "
        f"({pair['a']} − {pair['b']} CI {_diff(pair['ci_low'])} to {_diff(pair['ci_high'])}, "
        f"p = {pair['p_value']:.3g})"
    )


def _extreme(values: dict[str, float], *, highest: bool) -> tuple[list[str], float]:
    """The modes sharing the highest (or lowest) value, and that value."""
    best = max(values.values()) if highest else min(values.values())
    return [mode for mode, value in values.items() if value == best], best


def _names(modes: list[str]) -> str:
    return modes[0] if len(modes) == 1 else ", ".join(modes[:-1]) + " and " + modes[-1]


def _has(modes: list[str]) -> str:
    return "has" if len(modes) == 1 else "share"


def _varies(modes: list[str]) -> str:
    return "varies" if len(modes) == 1 else "vary"


def _ci(stats: dict[str, Any], sharing: int) -> str:
    if sharing > 1 or stats["ci_low"] is None:
        return ""
    return f", 95% CI {_acc(stats['ci_low'])} to {_acc(stats['ci_high'])}"


def _acc(value: float) -> str:
    return f"{value:.4f}"


def _diff(value: float) -> str:
    return f"{value:+.4f}"
