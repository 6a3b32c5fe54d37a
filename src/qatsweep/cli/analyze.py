"""``qatsweep analyze RESULTS -o REPORT_DIR``: the findings of a finished or partial sweep.

The analysis stack (pandas, scipy, matplotlib) is imported only when the command runs, so
that ``qatsweep --help`` and the other subcommands stay quick.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``analyze`` parser to the ``qatsweep`` command."""
    parser = subparsers.add_parser(
        "analyze",
        help="write report.md, summary.json and plots for a results table",
        description="Answer the rounding question for a trials.parquet file or a Tune "
        "experiment directory: the study's five findings, paired statistics and plots.",
    )
    parser.add_argument(
        "results",
        type=Path,
        metavar="RESULTS",
        help="trials.parquet, or a directory holding it or a Tune experiment",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="REPORT_DIR",
        help="directory for the report (default: RESULTS/report for a directory, else a "
        "'report' directory beside the file)",
    )
    parser.add_argument(
        "--threshold",
        type=_accuracy,
        default=0.70,
        help="test accuracy above which a configuration counts as well trained (default 0.70)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed of the bootstrap intervals (default 0)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the analysis and print the path of the report on stdout."""
    from qatsweep.analysis import REPORT_FILE, analyze

    report_dir = args.output if args.output is not None else default_report_dir(args.results)
    analyze(args.results, report_dir, threshold=args.threshold, seed=args.seed)
    print(report_dir / REPORT_FILE)
    return 0


def default_report_dir(results: Path) -> Path:
    """``report`` inside an experiment directory, or beside a Parquet file."""
    return results / "report" if results.is_dir() else results.parent / "report"


def _accuracy(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value
