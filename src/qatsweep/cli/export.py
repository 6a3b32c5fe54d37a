"""``qatsweep export EXPERIMENT_DIR``: rebuild the Parquet tables from a Tune experiment."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_export(args: argparse.Namespace) -> int:
    from qatsweep.export import export_experiment

    trials, curves, paths = export_experiment(args.experiment)
    statuses = trials.column("status").to_pylist()
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    print(f"{trials.num_rows} trials ({counts}), {curves.num_rows} curve points")
    for path in paths:
        print(f"wrote {path}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="write trials.parquet and curves.parquet for an experiment",
        description="Rebuild trials.parquet and curves.parquet from an experiment directory, "
        "finished, interrupted or still running.",
    )
    parser.add_argument(
        "experiment",
        metavar="EXPERIMENT_DIR",
        help="a directory `qatsweep run` created, e.g. results/quick",
    )
    parser.set_defaults(func=_cmd_export)
