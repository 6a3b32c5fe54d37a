"""``qatsweep run SWEEP.yaml``: run a sweep on local Ray or an existing cluster."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qatsweep.errors import QatSweepError
from qatsweep.schema import TRIALS_FILE
from qatsweep.sweep_config import load_sweep


def mode_table(trials: Any) -> str:
    """Mean test accuracy per mode over finished trials, as a small text table."""
    frame = trials.to_pandas()
    lines = [f"{'mode':<12} {'finished':>8} {'diverged':>8} {'error':>6} {'mean test_acc':>14}"]
    for mode, group in frame.groupby("mode", observed=True, sort=False):
        finished = group[group["status"] == "finished"]
        mean = f"{finished['test_acc'].mean():.4f}" if len(finished) else "-"
        lines.append(
            f"{mode!s:<12} {len(finished):>8} {(group['status'] == 'diverged').sum():>8} "
            f"{(group['status'] == 'error').sum():>6} {mean:>14}"
        )
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep, args.overrides)
    from qatsweep.ray_session import stop_ray
    from qatsweep.sweep import run_sweep

    try:
        outcome = run_sweep(sweep, address=args.address, show_progress=not args.no_progress)
    finally:
        stop_ray()
    return finish(outcome, args.analyze)


def _cmd_resume(args: argparse.Namespace) -> int:
    from qatsweep.ray_session import stop_ray
    from qatsweep.sweep import resume_sweep

    try:
        outcome = resume_sweep(str(args.experiment), address=args.address)
    finally:
        stop_ray()
    return finish(outcome, args.analyze)


def finish(outcome: Any, analyze_after: bool) -> int:
    """Print the summary of a sweep; the exit code says whether every trial ended well."""
    print(mode_table(outcome.trials))
    for path in outcome.paths:
        print(f"wrote {path}")
    errored = [
        name
        for name, status in zip(
            outcome.trials.column("trial_id").to_pylist(),
            outcome.trials.column("status").to_pylist(),
            strict=True,
        )
        if status == "error"
    ]
    report_dir = f"{outcome.experiment}/report"
    if analyze_after and not outcome.interrupted:
        from pathlib import Path

        from qatsweep.analysis import REPORT_FILE, analyze

        try:
            analyze(Path(outcome.experiment) / TRIALS_FILE, Path(report_dir))
            print(f"wrote {report_dir}/{REPORT_FILE}")
        except QatSweepError as err:  # the sweep's tables are safe; say why no report
            print(f"qatsweep: no report: {err}", file=sys.stderr)
    else:
        print(f"analyze with: qatsweep analyze {outcome.experiment} -o {report_dir}")
    if outcome.interrupted:
        print(
            "qatsweep: the sweep was interrupted; the tables hold what finished; finish it "
            f"with: qatsweep resume {outcome.experiment}",
            file=sys.stderr,
        )
        return 130
    if errored:
        print(f"qatsweep: {len(errored)} trial(s) failed: {', '.join(errored)}", file=sys.stderr)
        return 1
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray locally)",
    )

    parser.add_argument(
        "--analyze",
        action="store_true",
        help="when the sweep ends, also write the report (see `qatsweep analyze`)",
    )


def register(subparsers: Any) -> None:
    """Add the ``run`` and ``resume`` subcommands."""
    parser = subparsers.add_parser(
        "run",
        help="run a sweep file's grid with Ray Tune",
        description="Run every point of a sweep file's grid as a Ray Tune trial, on a local "
        "Ray instance or an existing cluster, then write trials.parquet and curves.parquet.",
    )
    parser.add_argument("sweep", metavar="SWEEP.yaml", help="the sweep file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep-file value, e.g. --set epochs=200 --set grid.width=[16,32]",
    )
    _add_common(parser)
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.set_defaults(func=_cmd_run)

    resume = subparsers.add_parser(
        "resume",
        help="finish an experiment whose driver stopped (killed, lost head, closed laptop)",
        description="Continue the unfinished trials of EXPERIMENT_DIR from their "
        "checkpoints; finished trials are kept, never re-run.",
    )
    resume.add_argument(
        "experiment",
        metavar="EXPERIMENT_DIR",
        help="a directory `qatsweep run` created, e.g. results/quick",
    )
    _add_common(resume)
    resume.set_defaults(func=_cmd_resume)
