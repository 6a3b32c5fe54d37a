"""GPU sweep: per-trial wall time and device of a shrunk ``tune_configs/gpu.yaml``.

Run by hand on a machine with CUDA (not a test):

    .venv/bin/python bench/bench_gpu_sweep.py [--epochs 300] [--widths 32,128]
        [--depths 2,10] [--modes nearest,floor] [--seeds 1] [--gpu 0.25] [--compare-cpu]
        [--address ADDR] [--keep DIR]

It runs ``qatsweep run tune_configs/gpu.yaml`` with the grid and epochs shrunk through
``--set`` (by default 2 modes x 2 widths x 2 depths x 1 seed = 8 trials of 300 epochs,
a quarter GPU and one CPU each, as in gpu.yaml), then reads ``trials.parquet`` and prints
one line per trial: status, ``trained_on``, wall seconds, milliseconds per epoch (wall
seconds over epochs, data and model set-up included) and test accuracy, followed by the
command's end-to-end time and the trials' span. With
``--compare-cpu`` it runs the same grid again with ``resources.gpu=0`` and prints the
speed-up per trial. ``--address`` joins a running cluster instead of starting local Ray
(then the GPUs need not be on this machine).

Without a CUDA device (and without ``--address``) it says so and exits with code 2. It
exits 1 when a trial did not finish or a GPU trial did not train on ``cuda``.
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
SWEEP = REPO / "tune_configs" / "gpu.yaml"


def cuda_problem() -> str | None:
    """Why this machine cannot run the bench, or ``None`` when CUDA is there."""
    try:
        import torch
    except ImportError as err:
        return f"torch is not importable ({err})"
    if not torch.cuda.is_available():
        build = torch.version.cuda
        kind = f"a CUDA {build} build" if build else "a CPU-only build"
        return (
            f"no CUDA device is visible (torch {torch.__version__}, {kind}); run this on a "
            "machine with an NVIDIA GPU and a CUDA build of torch (README: 'On a GPU "
            "machine'), or pass --address to use a cluster's GPU nodes"
        )
    return None


def run_sweep(
    storage: Path, name: str, overrides: list[str], address: str | None
) -> tuple[float, pd.DataFrame, subprocess.CompletedProcess[str]]:
    """One ``qatsweep run`` of gpu.yaml; its wall seconds, trials table and process."""
    sets = [f"storage={storage}", f"name={name}", *overrides]
    command = [sys.executable, "-m", "qatsweep", "run", str(SWEEP), "--no-progress"]
    command += [word for value in sets for word in ("--set", value)]
    if address:
        command += ["--address", address]
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=REPO, env={**os.environ}, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    table = storage / name / "trials.parquet"
    if not table.is_file():
        sys.exit(
            f"bench_gpu_sweep: `qatsweep run` exited {result.returncode} without "
            f"{table}:\n{result.stderr[-3000:]}"
        )
    return wall, pd.read_parquet(table), result


def report(title: str, wall: float, trials: pd.DataFrame) -> None:
    print(f"\n{title}: {len(trials)} trials, `qatsweep run` took {wall:.1f} s end to end")
    print(
        f"{'trial':<22} {'status':<9} {'trained_on':<10} {'seconds':>8} "
        f"{'ms/epoch':>9} {'test_acc':>8}  node"
    )
    for row in trials.itertuples(index=False):
        timed = pd.notna(row.seconds) and pd.notna(row.epochs_run) and row.epochs_run > 0
        per_epoch = f"{1000 * row.seconds / row.epochs_run:9.2f}" if timed else f"{'-':>9}"
        seconds = f"{row.seconds:8.2f}" if pd.notna(row.seconds) else f"{'-':>8}"
        accuracy = f"{row.test_acc:8.4f}" if pd.notna(row.test_acc) else f"{'-':>8}"
        node = str(row.node)[:12] if pd.notna(row.node) else "-"
        print(
            f"{row.trial_id:<22} {row.status!s:<9} {row.trained_on!s:<10} {seconds} "
            f"{per_epoch} {accuracy}  {node}"
        )
    done = trials.dropna(subset=["started_at", "seconds"])
    if len(done):
        ends = done["started_at"] + pd.to_timedelta(done["seconds"], unit="s")
        span = (ends.max() - done["started_at"].min()).total_seconds()
        print(
            f"trials' own time: {done['seconds'].sum():.1f} s; span from the first start "
            f"to the last end: {span:.1f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--widths", default="32,128", help="comma-separated grid.width")
    parser.add_argument("--depths", default="2,10", help="comma-separated grid.depth")
    parser.add_argument("--modes", default="nearest,floor", help="comma-separated grid.mode")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--gpu", type=float, default=0.25, help="GPU share per trial")
    parser.add_argument("--compare-cpu", action="store_true", help="also run with gpu 0")
    parser.add_argument("--address", help="join this Ray cluster instead of local Ray")
    parser.add_argument("--keep", type=Path, help="write the experiments here and keep them")
    args = parser.parse_args()

    if not args.address:
        problem = cuda_problem()
        if problem is not None:
            print(f"bench_gpu_sweep: {problem}", file=sys.stderr)
            return 2

    grid = [
        f"grid.mode=[{args.modes}]",
        f"grid.width=[{args.widths}]",
        f"grid.depth=[{args.depths}]",
        f"grid.seed={list(range(args.seeds))}",
        f"epochs={args.epochs}",
        f"report_every={max(1, args.epochs // 5)}",
    ]
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as scratch:
        storage = (args.keep or Path(scratch)).resolve()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        wall, gpu, _ = run_sweep(
            storage, f"bench_gpu_{stamp}", [*grid, f"resources.gpu={args.gpu}"], args.address
        )
        report(f"GPU ({args.gpu:g} GPU + 1 CPU per trial)", wall, gpu)
        failed = not gpu["status"].eq("finished").all()
        off_gpu = gpu[~gpu["trained_on"].fillna("").str.startswith("cuda")]
        if len(off_gpu):
            print(f"\nnot trained on cuda: {', '.join(off_gpu['trial_id'])}", file=sys.stderr)
            failed = True

        if args.compare_cpu:
            wall_cpu, cpu, _ = run_sweep(
                storage, f"bench_cpu_{stamp}", [*grid, "resources.gpu=0"], args.address
            )
            report("CPU (1 CPU per trial)", wall_cpu, cpu)
            both = gpu.merge(cpu, on="trial_id", suffixes=("_gpu", "_cpu"))
            print("\nspeed-up (CPU seconds / GPU seconds) per trial:")
            for row in both.itertuples(index=False):
                if row.seconds_gpu and pd.notna(row.seconds_gpu) and pd.notna(row.seconds_cpu):
                    print(f"  {row.trial_id:<22} {row.seconds_cpu / row.seconds_gpu:6.2f}x")
            failed = failed or not cpu["status"].eq("finished").all()
        if args.keep:
            print(f"\nexperiments kept under {storage}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
