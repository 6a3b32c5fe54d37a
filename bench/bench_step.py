"""Time one full-batch training step, float against every rounding mode (issue #2).

Run by hand, not as a test::

    .venv/bin/python bench/bench_step.py                    # the Markdown table
    .venv/bin/python bench/bench_step.py --profile 16x6:floor

A step is ``Trainer.train_epoch()`` on the default data (2000 spirals in 100 dimensions,
80/20 split, so one full batch of 1600 rows): forward, loss, backward and the Adam update,
with the observers and fake quantizers of a QAT model in the loop. Everything runs on one
CPU thread, as a sweep trial does.

Modes of one shape are timed in interleaved rounds (every mode once per round) rather than
one after the other, so that a slow spell on a shared machine lands on all of them alike and
the ratios to float stay meaningful. The reported time is the median over rounds of the
mean step time within a round.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import platform
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

import torch

from qatsweep.config import MODES, TrialConfig
from qatsweep.quant import quiet_deprecation
from qatsweep.trainer import Trainer

SHAPES: tuple[tuple[int, int], ...] = ((4, 2), (16, 6), (64, 6), (128, 10))


def _parse_shape(text: str) -> tuple[int, int]:
    width, _, depth = text.lower().partition("x")
    try:
        return int(width), int(depth)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be WIDTHxDEPTH, got {text!r}") from None


def _parse_profile(text: str) -> tuple[tuple[int, int], str]:
    shape, _, mode = text.partition(":")
    mode = mode or "nearest"
    if mode not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {mode!r}; choose from {MODES}")
    return _parse_shape(shape), mode


def make_trainer(width: int, depth: int, mode: str, per_channel: bool = False) -> Trainer:
    """A trainer with the default data on one CPU thread; the epoch count is irrelevant."""
    config = TrialConfig(
        mode=mode, width=width, depth=depth, per_channel=per_channel, threads=1, device="cpu"
    )
    return Trainer(config)


def _run(trainer: Trainer, steps: int) -> float:
    """Seconds per step over ``steps`` consecutive steps."""
    started = time.perf_counter()
    for _ in range(steps):
        if not trainer.train_epoch():
            raise RuntimeError(f"{trainer.config.mode} diverged during the benchmark")
    return (time.perf_counter() - started) / steps


def time_shape(
    width: int,
    depth: int,
    modes: Sequence[str],
    repeats: int,
    target_s: float,
    warmup: int,
    per_channel: bool = False,
) -> dict[str, float]:
    """Median seconds per step for each mode at one shape."""
    trainers = {mode: make_trainer(width, depth, mode, per_channel) for mode in modes}
    steps: dict[str, int] = {}
    for mode, trainer in trainers.items():
        # Warm-up also sizes each round: first-call allocations and lazy init happen here.
        _run(trainer, warmup)
        per_step = _run(trainer, warmup)
        steps[mode] = max(3, round(target_s / per_step))

    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one mode's round would be charged to that mode
    try:
        for _ in range(repeats):
            for mode, trainer in trainers.items():
                samples[mode].append(_run(trainer, steps[mode]))
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return {mode: statistics.median(values) for mode, values in samples.items()}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def table(results: dict[tuple[int, int], dict[str, float]], modes: Sequence[str]) -> str:
    """Markdown: one row per shape, ms per step and the ratio to float per mode."""
    quantized = [m for m in modes if m != "baseline"]
    header = ["width×depth", "float ms"] + [f"{m} ms (×)" for m in quantized]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (width, depth), times in results.items():
        base = times.get("baseline")
        cells = [f"{width}×{depth}", f"{base * 1e3:.2f}" if base else "–"]
        for mode in quantized:
            ms = times[mode] * 1e3
            ratio = f" ({times[mode] / base:.2f}×)" if base else ""
            cells.append(f"{ms:.2f}{ratio}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile(
    width: int, depth: int, mode: str, steps: int, top: int, per_channel: bool = False
) -> str:
    """The top of a cProfile of ``steps`` steps, by internal and by cumulative time."""
    trainer = make_trainer(width, depth, mode, per_channel)
    _run(trainer, 5)
    profiler = cProfile.Profile()
    profiler.enable()
    _run(trainer, steps)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    out.write(f"# cProfile: {width}x{depth} {mode}, {steps} steps\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shapes", nargs="+", type=_parse_shape, default=list(SHAPES), metavar="WxD"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (median)")
    parser.add_argument("--round-seconds", type=float, default=0.3, help="per mode and round")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing")
    parser.add_argument(
        "--per-channel",
        action="store_true",
        help="per-channel weight scales (default: per tensor)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const=((16, 6), "nearest"),
        type=_parse_profile,
        metavar="WxD:MODE",
        help="print the top of a cProfile for one shape and mode instead of the table",
    )
    parser.add_argument("--profile-steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if args.profile is not None:
        (width, depth), mode = args.profile
        with quiet_deprecation():
            print(profile(width, depth, mode, args.profile_steps, args.top, args.per_channel))
        return 0

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{now}; {cpu_model()}; torch {torch.__version__}; python {platform.python_version()}"
        f"; 1 thread; median of {args.repeats} interleaved rounds"
        f"; {'per-channel' if args.per_channel else 'per-tensor'} weights\n"
    )
    modes = list(dict.fromkeys(["baseline", *args.modes]))  # float first: the ratios need it
    results: dict[tuple[int, int], dict[str, float]] = {}
    with quiet_deprecation():
        for width, depth in args.shapes:
            results[(width, depth)] = time_shape(
                width,
                depth,
                modes,
                args.repeats,
                args.round_seconds,
                args.warmup,
                args.per_channel,
            )
            print(f"  {width}x{depth} done", file=sys.stderr)
    print(table(results, modes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
