"""Render ``report.md`` from the summary: tables, readings, verdicts, plots, exclusions.

Each section (all trials, then each group of extra-axis values) gets the five findings as
tables with their readings, the paired statistics, the verdict and the plots; the trials
left out and the grid cells without a result close the report.

Everything here formats numbers already in the summary; nothing is computed anew, so the
report and ``summary.json`` cannot disagree.
"""

from __future__ import annotations

from typing import Any

from qatsweep.analysis.findings import BASELINE, NEAREST, quantized_modes

#: Rows of missing cells shown in the report; ``summary.json`` lists them all.
MISSING_ROWS_SHOWN = 50

_PLOT_TITLES = {
    "heatmap": "Mean test accuracy by width and depth, per mode",
    "penalty": "Quantization penalty against width and depth",
    "paired_vs_nearest": "Paired differences against nearest",
}


def section_title(group: dict[str, Any], axes: list[str]) -> str:
    """``All trials`` (noting pooled axes) or the group's values, e.g. ``bits = 4``."""
    if group:
        return ", ".join(f"{axis} = {value}" for axis, value in group.items())
    return f"All trials (pooled over {', '.join(axes)})" if axes else "All trials"


def render_report(summary: dict[str, Any]) -> str:
    """The whole Markdown report for ``summary`` (plots must already be listed in it)."""
    lines = _header(summary)
    lines += _section(summary, section_title({}, summary["axes"]))
    for group in summary["groups"]:
        lines += _section(group, section_title(group["group"], summary["axes"]))
    lines += _excluded(summary)
    lines += _missing(summary)
    return "\n".join(lines).rstrip() + "\n"


def _header(summary: dict[str, Any]) -> list[str]:
    missing = summary["missing_cells"]
    grid = (
        f"The grid has {summary['grid_cells']} cells (mode × configuration × seed), "
        f"{len(missing)} of them without a used trial."
        if missing is not None
        else f"The trials do not form a grid ({summary['grid_cells']} possible cells), so "
        "missing cells are not listed."
    )
    config = ", ".join([*summary["axes"], "width", "depth"])
    return [
        "# qatsweep analysis",
        "",
        f"Results: `{summary['source']}`. {summary['n_trials']} trials: "
        f"{summary['n_used']} used, {summary['n_excluded']} excluded (listed at the end). " + grid,
        "",
        f"Accuracy is `test_acc`, held out, of the fake-quantized model. A configuration is "
        f"({config}); a cell is a configuration and a seed. Seed std is the sample standard "
        "deviation (ddof=1) across seeds within a configuration, averaged over the "
        "configurations with two or more seeds. A quantized mode wins a cell only when no "
        "other quantized mode has the same accuracy there; otherwise the cell is a tie. "
        f"Paired intervals are percentile bootstraps ({summary['bootstrap_resamples']:,} "
        f"resamples, seed {summary['seed']}); p-values are Wilcoxon signed-rank tests, not "
        "adjusted for the number of pairs.",
        "",
    ]


def _section(section: dict[str, Any], title: str) -> list[str]:
    modes = list(section["modes"])
    readings = section["readings"]
    return [
        f"## {title}",
        "",
        f"{section['n_used']} trials used; modes: {', '.join(modes)}.",
        "",
        "### 1. Accuracy per mode",
        "",
        *_mode_table(section["modes"]),
        "",
        readings["modes"],
        "",
        "### 2. Depth",
        "",
        *_axis_table(section["by_depth"], "depth", modes, "gap_vs_nearest"),
        "",
        readings["by_depth"],
        "",
        f"### 3. Well-trained configurations (mean test_acc > "
        f"{section['well_trained']['threshold']:.2f})",
        "",
        *_well_trained_table(section["well_trained"]),
        "",
        readings["well_trained"],
        "",
        "### 4. Win rate",
        "",
        *_wins_table(section["wins"], section["win_cells"]),
        "",
        readings["wins"],
        "",
        "### 5. Width",
        "",
        *_axis_table(section["by_width"], "width", modes, "penalty"),
        "",
        readings["by_width"],
        "",
        "### Paired comparisons over matched cells",
        "",
        *_pairs_table(section["pairs"]),
        "",
        "### Verdict",
        "",
        section["verdict"],
        "",
        *_plots(section.get("plots", {})),
    ]


def _mode_table(modes: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        [mode, str(s["n"]), _num(s["mean"]), _num(s["seed_std"]), _interval(s)]
        for mode, s in modes.items()
    ]
    header = ["mode", "trials", "mean test_acc", "seed std", "95% CI of the mean"]
    return _table(header, rows)


def _axis_table(rows: list[dict[str, Any]], axis: str, modes: list[str], extra: str) -> list[str]:
    """Means per mode at each depth or width, then the gaps (vs nearest) or penalties."""
    if extra == "gap_vs_nearest":
        shown = [m for m in quantized_modes(modes) if m != NEAREST] if NEAREST in modes else []
        extra_names = [f"{mode} − nearest" for mode in shown]
    else:
        shown = quantized_modes(modes) if BASELINE in modes else []
        extra_names = [f"baseline − {mode}" for mode in shown]
    body = [
        [str(row[axis])]
        + [_num(row["mean"][mode]) for mode in modes]
        + [_num(row[extra][mode], signed=True) for mode in shown]
        for row in rows
    ]
    return _table([axis, *modes, *extra_names], body)


def _well_trained_table(well: dict[str, Any]) -> list[str]:
    rows = [[mode, _num(mean)] for mode, mean in well["mean"].items()]
    header = ["mode", f"mean test_acc ({well['trials']} trials in the selected configurations)"]
    return _table(header, rows)


def _wins_table(wins: dict[str, int], cells: int) -> list[str]:
    rows = [
        [name, str(count), f"{count / cells:.1%}" if cells else "—"]
        for name, count in wins.items()
    ]
    return _table(["mode", f"cells won (of {cells})", "share"], rows)


def _pairs_table(pairs: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            p["a"],
            p["b"],
            str(p["n"]),
            _num(p["mean_diff"], signed=True),
            _interval(p, signed=True),
            str(p["wins"]),
            str(p["ties"]),
            str(p["losses"]),
            "—" if p["p_value"] is None else f"{p['p_value']:.3g}",
        ]
        for p in pairs
    ]
    header = ["a", "b", "cells", "mean a − b", "95% bootstrap CI", "a higher", "ties"]
    return _table([*header, "b higher", "Wilcoxon p"], rows)


def _plots(plots: dict[str, str]) -> list[str]:
    if not plots:
        return []
    lines = ["### Plots", ""]
    for kind, name in plots.items():
        lines += [f"![{_PLOT_TITLES.get(kind, kind)}]({name})", ""]
    return lines


def _excluded(summary: dict[str, Any]) -> list[str]:
    excluded = summary["excluded"]
    lines = ["## Excluded trials", ""]
    if not excluded:
        return [*lines, "No trial was left out.", ""]
    columns = ["trial_id", "mode", "width", "depth", "seed", *summary["axes"], "status"]
    rows = [[_cell(t[c]) for c in columns] + [t["reason"]] for t in excluded]
    return [*lines, *_table([*columns, "reason"], rows), ""]


def _missing(summary: dict[str, Any]) -> list[str]:
    missing = summary["missing_cells"]
    if not missing:
        return []
    columns = ["mode", "width", "depth", "seed", *summary["axes"], "reason"]
    rows = [[_cell(cell[c]) for c in columns] for cell in missing[:MISSING_ROWS_SHOWN]]
    lines = ["## Missing grid cells", "", *_table(columns, rows), ""]
    if len(missing) > MISSING_ROWS_SHOWN:
        more = len(missing) - MISSING_ROWS_SHOWN
        lines += [f"… and {more} more; `summary.json` lists them all.", ""]
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def _cell(value: Any) -> str:
    """Table text for a value; a ``|`` inside (an error message) would split the cell."""
    return "—" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _interval(stats: dict[str, Any], *, signed: bool = False) -> str:
    if stats["ci_low"] is None:
        return "—"
    return f"{_num(stats['ci_low'], signed=signed)} to {_num(stats['ci_high'], signed=signed)}"


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
