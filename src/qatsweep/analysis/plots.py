"""The report's plots: accuracy heatmaps, quantization penalty, paired differences.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas and never through
pyplot: that needs no display (headless workers, CI) and leaves pyplot's global backend
alone for a notebook that imports qatsweep.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qatsweep.analysis.findings import BASELINE, NEAREST, quantized_modes
from qatsweep.analysis.output import write_atomic
from qatsweep.analysis.paired import differences_vs_nearest

#: Cells up to this many per side get their value written in the heatmap.
_ANNOTATE_UP_TO = 12
_DPI = 110


def draw_plots(
    used: pd.DataFrame, section: dict[str, Any], report_dir: Path, *, title: str, stem: str
) -> dict[str, str]:
    """Draw the plots that the section's modes allow, and return their file names by kind.

    ``stem`` is appended to each file name so that groups of the table do not overwrite
    each other; the penalty plot needs baseline, the paired plot needs nearest.
    """
    modes = list(section["modes"])
    figures = {"heatmap": heatmap_figure(used, modes, title)}
    if BASELINE in modes and quantized_modes(modes):
        figures["penalty"] = penalty_figure(section, modes, title)
    differences = differences_vs_nearest(used, modes)
    if any(len(diff) for diff in differences.values()):
        figures["paired_vs_nearest"] = paired_figure(differences, title)

    files = {}
    for kind, figure in figures.items():
        name = f"{kind}{stem}.png"
        write_atomic(report_dir / name, partial(figure.savefig, format="png", dpi=_DPI))
        files[kind] = name
    return files


def heatmap_figure(used: pd.DataFrame, modes: list[str], title: str) -> Figure:
    """Mean test accuracy over seeds, width across and depth up, one panel per mode."""
    widths = sorted(used["width"].unique())
    depths = sorted(used["depth"].unique())
    grids = {
        mode: used[used["mode"] == mode]
        .pivot_table(index="depth", columns="width", values="test_acc", aggfunc="mean")
        .reindex(index=depths, columns=widths)
        .to_numpy(dtype=float, na_value=np.nan)
        for mode in modes
    }
    low = np.nanmin([np.nanmin(grid) for grid in grids.values()])
    high = np.nanmax([np.nanmax(grid) for grid in grids.values()])

    columns = min(len(modes), 4)
    rows = math.ceil(len(modes) / columns)
    figure = _figure(3.4 * columns + 0.8, 3.0 * rows + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, mode in zip(axes, modes, strict=False):
        image = ax.imshow(grids[mode], origin="lower", vmin=low, vmax=high, cmap="viridis")
        ax.set_title(mode)
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("width")
        ax.set_ylabel("depth")
        if max(len(widths), len(depths)) <= _ANNOTATE_UP_TO:
            _annotate(ax, grids[mode], low, high)
    for ax in axes[len(modes) :]:
        ax.set_visible(False)
    figure.colorbar(image, ax=list(axes[: len(modes)]), label="mean test_acc")
    figure.suptitle(f"Test accuracy by width and depth — {title}")
    return figure


def penalty_figure(section: dict[str, Any], modes: list[str], title: str) -> Figure:
    """Quantization penalty (baseline − mode) against width and against depth."""
    figure = _figure(11, 4.2)
    panels = {"width": section["by_width"], "depth": section["by_depth"]}
    for ax, (axis, rows) in zip(figure.subplots(1, 2), panels.items(), strict=True):
        x = [row[axis] for row in rows]
        for mode in quantized_modes(modes):
            y = [_nan(row["penalty"][mode]) for row in rows]
            ax.plot(x, y, marker="o", label=mode)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        if axis == "width" and min(x) > 0 and max(x) / min(x) >= 8:
            ax.set_xscale("log", base=2)  # widths grow in powers of two
        ax.set_xticks(x, [str(value) for value in x])
        ax.set_xlabel(axis)
        ax.set_ylabel("baseline − mode (test_acc)")
        ax.legend(fontsize="small")
    figure.suptitle(f"Quantization penalty — {title}")
    return figure


def paired_figure(differences: dict[str, np.ndarray], title: str) -> Figure:
    """Each mode's paired differences against nearest over matched cells, box and points."""
    shown = {mode: diff for mode, diff in differences.items() if len(diff)}
    figure = _figure(1.6 * len(shown) + 2.4, 4.2)
    ax = figure.subplots()
    ax.boxplot(list(shown.values()), showfliers=False)
    for position, diff in enumerate(shown.values(), start=1):
        # Evenly spread points, not random jitter, so the plot is the same on every run.
        spread = np.linspace(-0.15, 0.15, len(diff)) if len(diff) > 1 else np.zeros(1)
        ax.scatter(position + spread, diff, s=10, alpha=0.6, color="tab:blue")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(1, len(shown) + 1), list(shown))
    ax.set_ylabel(f"mode − {NEAREST} (test_acc, matched cells)")
    figure.suptitle(f"Paired differences against {NEAREST} — {title}")
    return figure


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _annotate(ax: Any, grid: np.ndarray, low: float, high: float) -> None:
    middle = (low + high) / 2
    for (row, column), value in np.ndenumerate(grid):
        if np.isnan(value):
            continue
        color = "black" if value > middle else "white"
        ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
