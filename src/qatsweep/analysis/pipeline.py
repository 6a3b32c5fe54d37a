"""``analyze``: from a results table to ``report.md``, ``summary.json`` and PNG plots.

The steps are load (:mod:`~qatsweep.analysis.load`) → sort trials into used and excluded
(:mod:`~qatsweep.analysis.clean`) → compute the findings (:mod:`~qatsweep.analysis.summary`)
→ draw (:mod:`~qatsweep.analysis.plots`) → render (:mod:`~qatsweep.analysis.report`). Each
file is replaced atomically, plots first and the report last, so a report never points at
a plot that is not there yet.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from qatsweep.analysis.clean import Trials, prepare
from qatsweep.analysis.load import load_trials
from qatsweep.analysis.output import write_json_atomic, write_text_atomic
from qatsweep.errors import ConfigError, ResultsError

logger = logging.getLogger(__name__)

REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"


def analyze(
    results: Path, report_dir: Path, *, threshold: float = 0.70, seed: int = 0
) -> dict[str, Any]:
    """Analyse a results table and write the report, the summary and the plots.

    Args:
        results: a ``trials.parquet`` file, or a directory holding one or a Tune experiment.
        report_dir: where ``report.md``, ``summary.json`` and the PNGs go (created).
        threshold: accuracy above which a configuration counts as well trained.
        seed: seed of the bootstrap generator, so intervals repeat exactly.

    Returns:
        The summary, as written to ``summary.json``.

    Raises:
        ResultsError: the results are missing, unreadable or hold no usable trial.
        ConfigError: ``threshold`` or ``seed`` is out of range, or ``report_dir`` cannot
            be created.
    """
    _check_options(threshold, seed)
    results, report_dir = Path(results), Path(report_dir)

    trials = prepare(load_trials(results))
    if trials.used.empty:
        raise ResultsError(_nothing_used(trials, results))

    # scipy and matplotlib load only once there is a table to analyse: a mistyped path or
    # a foreign file then fails in a fraction of the time their import takes.
    from qatsweep.analysis.plots import draw_plots
    from qatsweep.analysis.report import render_report, section_title
    from qatsweep.analysis.summary import sections, summarize

    summary = summarize(trials, threshold=threshold, seed=seed, source=str(results))

    _make_dir(report_dir)
    section_summaries = [summary, *summary["groups"]]
    for index, ((group, used), section) in enumerate(
        zip(sections(trials), section_summaries, strict=True)
    ):
        section["plots"] = draw_plots(
            used,
            section,
            report_dir,
            title=section_title(group, trials.axes),
            stem=f"_{index}_{_slug(group)}" if group else "",
        )
    write_json_atomic(report_dir / SUMMARY_FILE, summary)
    write_text_atomic(report_dir / REPORT_FILE, render_report(summary))

    logger.info("analysed %d of %d trials into %s", summary["n_used"], trials.n_trials, report_dir)
    return summary


def _check_options(threshold: float, seed: int) -> None:
    if not (isinstance(threshold, int | float) and math.isfinite(threshold)):
        raise ConfigError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must lie between 0 and 1 (an accuracy), got {threshold}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _nothing_used(trials: Trials, results: Path) -> str:
    counts = Counter(str(trial["status"]) for trial in trials.excluded)
    listed = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    return (
        f"none of the {trials.n_trials} trials in {results} can be analysed ({listed}); the "
        "analysis needs finished trials with a test_acc"
    )


def _make_dir(report_dir: Path) -> None:
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the report directory {report_dir}: {err.strerror or err}"
        ) from err


def _slug(group: dict[str, Any]) -> str:
    """A file-name-safe rendering of a group's values, e.g. ``bits-4_per_channel-True``."""
    text = "_".join(f"{axis}-{value}" for axis, value in group.items())
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)
