"""Assemble the numbers of ``summary.json``: the findings of each section of the table.

The top level holds the findings over every used trial; when the table has extra axes
(bits, per_channel, lr, ...), those axes are part of each configuration, so cells stay
matched, and ``groups`` repeats the findings once per combination of their values: a sweep
over bits yields one set of findings per bit width. Without extra axes ``groups`` is empty.

Keys of a section (the top level and each entry of ``groups``, which adds ``group``, its
axis values): ``n_used``; ``modes`` (per mode ``n``, ``mean``, ``seed_std``, ``ci_low``,
``ci_high``); ``by_depth`` and ``by_width`` (rows with ``mean`` per mode, and
``gap_vs_nearest`` and ``penalty`` per quantized mode where nearest and baseline exist);
``depth_gap_slope``; ``well_trained``; ``wins`` (per quantized mode and ``tie``) with
``win_cells``; ``pairs`` (``a``, ``b``, ``n``, ``mean_diff``, ``ci_low``, ``ci_high``,
``p_value``, ``wins``, ``ties``, ``losses``); ``readings``; ``verdict``; ``plots``.
The top level adds the settings (``source``, ``threshold``, ``seed``, ``confidence``,
``bootstrap_resamples``), ``n_trials``, ``n_excluded``, ``axes``, ``excluded`` (each
left-out trial with its ``reason``), ``grid_cells`` and ``missing_cells``. Numbers that
cannot be computed (an interval from one value, a mode absent at some depth) are ``null``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from qatsweep.analysis.clean import Trials, order_modes
from qatsweep.analysis.findings import (
    CONFIDENCE,
    axis_table,
    gap_slopes,
    mode_stats,
    well_trained,
    win_counts,
)
from qatsweep.analysis.output import to_python
from qatsweep.analysis.paired import RESAMPLES, paired_stats
from qatsweep.analysis.readings import readings, verdict


def sections(trials: Trials) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The used trials as (group values, frame) pairs: all of them first, then each group.

    The first section's group is empty: it pools over the extra axes.
    """
    parts: list[tuple[dict[str, Any], pd.DataFrame]] = [({}, trials.used)]
    if trials.axes:
        for values, used in trials.used.groupby(trials.axes, dropna=False, sort=True):
            parts.append((to_python(dict(zip(trials.axes, values, strict=True))), used))
    return parts


def summarize(trials: Trials, *, threshold: float, seed: int, source: str) -> dict[str, Any]:
    """The whole summary: settings, overall findings, groups, exclusions, missing cells."""
    parts = sections(trials)
    overall = section_summary(parts[0][1], threshold=threshold, seed=seed)
    groups = [
        {"group": group, **section_summary(used, threshold=threshold, seed=seed)}
        for group, used in parts[1:]
    ]
    summary = {
        "source": source,
        "threshold": threshold,
        "seed": seed,
        "confidence": CONFIDENCE,
        "bootstrap_resamples": RESAMPLES,
        "n_trials": trials.n_trials,
        "n_excluded": len(trials.excluded),
        "axes": trials.axes,
        **overall,
        "groups": groups,
        "excluded": trials.excluded,
        "grid_cells": trials.grid_cells,
        "missing_cells": trials.missing_cells,
    }
    return to_python(summary)


def section_summary(used: pd.DataFrame, *, threshold: float, seed: int) -> dict[str, Any]:
    """The five findings, the paired statistics and their readings for one section."""
    modes = order_modes(used["mode"].unique())
    wins, win_cells = win_counts(used, modes)
    by_depth = axis_table(used, modes, "depth")

    result: dict[str, Any] = {
        "n_used": len(used),
        "modes": mode_stats(used, modes),
        "by_depth": by_depth,
        "depth_gap_slope": gap_slopes(by_depth),
        "well_trained": well_trained(used, modes, threshold),
        "wins": wins,
        "win_cells": win_cells,
        "by_width": axis_table(used, modes, "width"),
        "pairs": paired_stats(used, modes, seed),
    }
    result = to_python(result)
    result["readings"] = readings(result)
    result["verdict"] = verdict(result)
    return result
