"""One Tune trial: the QAT trainer behind ``tune.report``, with checkpoints and retries.

Every ``report_every`` epochs a trial reports ``epoch`` and the metrics; at the first report
after each ``checkpoint_every`` epochs it also saves a checkpoint holding everything needed
to continue bit-exactly (weights, observers, quantizer scales, optimizer moments, random
streams, the epoch). Its last report carries the final ``status`` (finished or diverged),
its wall ``seconds``, where it ran and the library versions, and comes with a last
checkpoint holding that final report.

A trial restored from a checkpoint (a retry after an error, or ``qatsweep resume`` after
the driver died) continues from it; one whose final report is in its checkpoint only
repeats that report, so a finished trial is never trained twice.

Failure injection, for tests of all this: ``QATSWEEP_INJECT_FAILURE="epoch=12"`` makes a
trial raise once after epoch 12 (``times=N`` for N times, ``times=always`` for every
attempt; ``trial=floor_w8`` only trials whose name contains that text). Each injected
failure leaves a marker file in the trial directory so that a retry can tell.
"""

from __future__ import annotations

import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from qatsweep import __version__
from qatsweep.config import TrialConfig

INJECT_ENV = "QATSWEEP_INJECT_FAILURE"
STATE_FILE = "trial_state.pt"


class InjectedFailure(RuntimeError):
    """The failure ``QATSWEEP_INJECT_FAILURE`` asked for."""


def parse_injection(text: str | None) -> dict[str, str] | None:
    """``"epoch=12,times=1,trial=floor"`` → its fields, or ``None`` when unset."""
    if not text:
        return None
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    if "epoch" not in fields:
        raise ValueError(f"{INJECT_ENV}={text!r} needs epoch=N")
    return fields


def maybe_inject_failure(
    injection: dict[str, str], epoch: int, trial_name: str, trial_dir: str
) -> None:
    """Raise ``InjectedFailure`` when ``injection`` (see the module doc) asks for one now."""
    if int(injection["epoch"]) != epoch:
        return
    if injection.get("trial", "") not in trial_name:
        return
    times = injection.get("times", "1")
    markers = sorted(Path(trial_dir).glob("injected_failure_*"))
    if times != "always" and len(markers) >= int(times):
        return
    Path(trial_dir, f"injected_failure_{len(markers) + 1}").write_text(f"epoch {epoch}\n")
    raise InjectedFailure(f"injected failure at epoch {epoch} ({INJECT_ENV})")


def versions() -> dict[str, str]:
    """Versions of the code and libraries a trial ran with."""
    import ray

    return {
        "qatsweep_version": __version__,
        "torch_version": torch.__version__,
        "ray_version": ray.__version__,
        "python_version": platform.python_version(),
    }


def _report_with_checkpoint(metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """``tune.report`` with a checkpoint of ``state``.

    Tune copies the checkpoint to the experiment's storage before ``report`` returns, so
    the local copy lives in a temporary directory removed right after.
    """
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="qatsweep-ckpt-") as directory:
        torch.save(state, os.path.join(directory, STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _load(checkpoint: Any) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        # Our own file, written above: it holds RNG states, not only tensors.
        return torch.load(os.path.join(directory, STATE_FILE), weights_only=False)


def run_trial(params: dict[str, Any], report_every: int, checkpoint_every: int) -> None:
    """The Tune trainable (see the module docstring)."""
    import ray
    from ray import tune

    from qatsweep.trainer import Trainer, train

    context = ray.get_runtime_context()
    # Threads and device follow what Ray granted: a trial given no GPU never touches CUDA.
    threads = max(1, int(context.get_assigned_resources().get("CPU", 1)))
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    config = TrialConfig.parse(
        {**params, "threads": threads, "device": device}, source="trial parameters"
    )
    attempt_started = time.time()

    state: dict[str, Any] = {"started_at": attempt_started, "seconds": 0.0}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        state = _load(checkpoint)
        if state.get("final") is not None:
            tune.report(state["final"])  # finished before the driver stopped: no retraining
            return
    started_at, seconds_before = state["started_at"], state.get("seconds", 0.0)

    trainer = Trainer(config)
    if "trainer" in state:
        trainer.load_state_dict(state["trainer"])
    where: dict[str, Any] = {
        "node": context.get_node_id(),
        "hostname": socket.gethostname(),
        "trained_on": str(trainer.device),
        "started_at": started_at,
    }
    last_checkpoint = trainer.epoch

    def seconds() -> float:
        """Wall time spent on this trial over all its attempts, not the pauses between."""
        return seconds_before + time.time() - attempt_started

    on_epoch = None
    injection = parse_injection(os.environ.get(INJECT_ENV))
    if injection is not None:
        tune_context = tune.get_context()
        name, directory = tune_context.get_trial_name(), tune_context.get_trial_dir()

        def on_epoch(current: Trainer) -> None:
            maybe_inject_failure(injection, current.epoch, name, directory)

    def on_report(epoch: int, loss: float, train_acc: float, test_acc: float) -> None:
        nonlocal last_checkpoint
        metrics = {
            "epoch": epoch,
            "loss": loss,
            "train_acc": train_acc,
            "test_acc": test_acc,
            "status": "running",
            **where,
        }
        if epoch - last_checkpoint >= checkpoint_every:
            last_checkpoint = epoch
            saved = {
                "trainer": trainer.state_dict(),
                "started_at": started_at,
                "seconds": seconds(),
                "final": None,
            }
            _report_with_checkpoint(metrics, saved)
        else:
            tune.report(metrics)

    result = train(
        config, on_report=on_report, report_every=report_every, trainer=trainer, on_epoch=on_epoch
    )

    final = {
        "epoch": result.epochs_run,
        "loss": result.loss,
        "train_acc": result.train_acc,
        "test_acc": result.test_acc,
        "status": result.status,
        "seconds": seconds(),
        **where,
        **versions(),
    }
    _report_with_checkpoint(final, {"final": final, "started_at": started_at})
