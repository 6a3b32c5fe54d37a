"""Sweep overhead per trial: 40 one-epoch trials through ``qatsweep run``.

Run by hand (not a test):  .venv/bin/python bench/bench_sweep.py [--trials 40]

It runs the smoke sweep file with a 40-point grid of one-epoch trials, one at a time
(``max_concurrent: 1``, so that the trials' own time adds up to a span), then reads
``trials.parquet`` and prints:

- end to end: the wall time of the whole command (Python start, Ray start, export);
- per trial: (span from the first trial's start to the last one's end, minus the sum of
  the trials' own wall seconds) / trials, which is Tune's scheduling, actor reuse and
  reporting cost per trial, the figure the issue's 0.2 s target is about.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as storage:
        overrides = [
            f"storage={storage}", "name=bench", "epochs=1", "report_every=1",
            "max_concurrent=1", f"grid.seed={list(range(args.trials // 2))}",
            "grid.mode=[nearest,floor]",
        ]
        command = [sys.executable, "-m", "qatsweep", "run", "tune_configs/smoke.yaml",
                   "--no-progress", *[a for o in overrides for a in ("--set", o)]]
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, env={**os.environ},
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        trials = pd.read_parquet(Path(storage) / "bench" / "trials.parquet")

    assert (trials["status"] == "finished").all(), trials["status"].value_counts()
    ends = trials["started_at"] + pd.to_timedelta(trials["seconds"], unit="s")
    span = (ends.max() - trials["started_at"].min()).total_seconds()
    own = trials["seconds"].sum()
    n = len(trials)
    print(f"trials: {n}, one epoch each, one at a time")
    print(f"end to end: {wall:.1f} s ({wall / n:.3f} s per trial, Ray start-up included)")
    print(f"trials' own time: {own:.2f} s ({own / n:.3f} s per trial)")
    print(f"span of the trials: {span:.2f} s")
    print(f"overhead per trial: {(span - own) / n:.3f} s  (target <= 0.2 s)")


if __name__ == "__main__":
    main()
