"""The sweep: a Ray Tune grid over trial settings, each trial the QAT trainer.

``run_sweep`` starts (or joins) Ray, records the sweep in ``qatsweep.json``, runs the grid
with ``tune.Tuner`` and, when it ends or is interrupted, writes the Parquet tables.
Choices made around Ray 2.60's pitfalls:

- ``storage_path`` is always absolute (a relative one fails inside pyarrow);
- a trial always reserves whole CPUs, also beside a fractional GPU (a GPU request alone
  reserves no CPU), and those CPUs are the trial's torch thread count;
- actors are reused between trials: a function trainable otherwise pays for a new worker
  process per trial (about 1.9 s against 0.17 s on a 2-core machine);
- trial directories are named by what they are (``floor_w16_d4_s0_<id>``), not by Tune's
  default, which embeds the whole config and grows too long.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from qatsweep import __version__
from qatsweep.errors import ConfigError, QatSweepError, ResultsError
from qatsweep.export import METADATA_FILE, export_experiment, read_metadata, trial_name
from qatsweep.preflight import (
    check_cluster_resources,
    check_local_resources,
    check_shared_storage,
    check_storage_is_absolute,
    check_storage_writable,
)
from qatsweep.ray_session import cluster_address, start_ray
from qatsweep.storage import Location
from qatsweep.sweep_config import SweepConfig, sweep_to_dict

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    """What a finished (or interrupted) sweep left behind."""

    experiment: str
    trials: pa.Table
    curves: pa.Table
    paths: list[str]
    interrupted: bool

    def count(self, status: str) -> int:
        """How many trials ended with ``status``."""
        return sum(1 for s in self.trials.column("status").to_pylist() if s == status)


def _git(source: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(source), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_revision() -> str | None:
    """The project's git revision, ``-dirty`` when changed, if qatsweep runs from its checkout.

    An installed copy inside some other repository (a venv in a project) gets ``None``:
    the checkout must be the one holding this source file.
    """
    source = Path(__file__).resolve().parent
    top = _git(source, "rev-parse", "--show-toplevel")
    if not top or not (Path(top) / "src" / "qatsweep").resolve() == source:
        return None
    revision = _git(source, "rev-parse", "HEAD")
    if not revision:
        return None
    dirty = _git(source, "status", "--porcelain", "--untracked-files=no")
    return f"{revision}-dirty" if dirty else revision


def _param_space(sweep: SweepConfig) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = dict(sweep.trial)
    for axis, values in sweep.grid.items():
        space[axis] = tune.grid_search(values)
    return space


def _write_metadata(sweep: SweepConfig, experiment: Location) -> None:
    metadata = {
        "qatsweep_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "git_rev": git_revision(),
        "sweep": sweep_to_dict(sweep),
    }
    experiment.write_bytes(json.dumps(metadata, indent=2).encode(), METADATA_FILE)


def _quiet_tune() -> None:
    # Tune's newer console output prints banners even at verbose=0; the older one keeps
    # quiet, leaving the terminal to qatsweep's progress line.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Save the experiment's state every few seconds (Tune's default is at least 10 s), so
    # that a resume after the driver is killed knows nearly every trial that finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Each checkpoint snapshots the experiment state on purpose (num_to_keep=1): that is
    # what lets a resume skip finished trials, so Tune's warning about it is no news.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _trainable(sweep: SweepConfig) -> Any:
    """The trial function with its settings and per-point resources."""
    from ray import tune

    from qatsweep.trial import run_trial  # torch loads only once a sweep really starts

    axes = sweep.axes

    def resources_of(config: dict[str, Any]) -> Any:
        point = {axis: config[axis] for axis in axes}
        return tune.PlacementGroupFactory([sweep.resources.for_point(point).ray_request()])

    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            report_every=sweep.report_every,
            checkpoint_every=sweep.checkpoint_every,
        ),
        resources_of,
    )


def _tuner(sweep: SweepConfig, callbacks: list[Any]) -> Any:
    from ray import tune

    varying = sweep.axes

    def name_of(trial: Any) -> str:
        return trial_name(trial.config, varying)

    return tune.Tuner(
        _trainable(sweep),
        param_space=_param_space(sweep),
        tune_config=tune.TuneConfig(
            reuse_actors=True,
            max_concurrent_trials=sweep.max_concurrent,
            trial_name_creator=name_of,
            trial_dirname_creator=lambda trial: f"{name_of(trial)}_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=sweep.name,
            storage_path=sweep.resolved_storage(),
            callbacks=callbacks,
            verbose=0,
            # Never fail_fast: it stops the grid generator, and points not started yet
            # would be lost for good, even to a resume.
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def _fit(tuner: Any, experiment: Location) -> SweepOutcome:
    """Run the tuner; whatever happens, write the tables of what there is.

    Raises:
        QatSweepError: Tune stopped on an error of its own (storage, credentials...); the
            tables hold what finished and the message says how to resume.
    """
    interrupted = False
    failure: Exception | None = None
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: writing the tables of what has finished")
    except Exception as err:  # noqa: BLE001 - any Tune failure: keep the results, explain
        failure = err
    trials, curves, paths = export_experiment(experiment.uri)
    if failure is not None:
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
        raise QatSweepError(
            f"the sweep stopped: {type(failure).__name__}: {reason}; the tables hold what "
            f"finished; continue with: qatsweep resume {experiment.display()}"
        ) from failure
    # Tune's own Ctrl-C handler ends fit() normally, leaving trials unfinished.
    unfinished = {"running", "pending"} & set(trials.column("status").to_pylist())
    return SweepOutcome(
        experiment.display(), trials, curves, paths, interrupted or bool(unfinished)
    )


def _join(sweep: SweepConfig, address: str | None) -> None:
    """Start or join Ray, refusing what cannot work before anything is written."""
    address = cluster_address(address)
    if address is None:
        check_local_resources(sweep)  # before starting anything
    else:
        check_storage_is_absolute(sweep)  # before joining
    start_ray(address)
    if address is not None:
        check_cluster_resources(sweep)
        check_shared_storage(sweep)


def _callbacks(sweep: SweepConfig, show_progress: bool) -> list[Any]:
    from qatsweep.progress import SweepProgress, TrialLog
    from qatsweep.tensorboard import SweepTensorBoard

    callbacks: list[Any] = [SweepTensorBoard(), TrialLog()]
    if show_progress:
        callbacks.append(SweepProgress(sweep.size))
    return callbacks


def run_sweep(
    sweep: SweepConfig, address: str | None = None, show_progress: bool = True
) -> SweepOutcome:
    """Run every grid point of ``sweep`` and write the tables.

    Raises:
        ConfigError: the experiment exists already, or the cluster is too small.
    """
    experiment = Location(sweep.experiment_path())
    if experiment.exists():
        raise ConfigError(
            f"experiment {experiment.display()} exists already; finish it with "
            f"`qatsweep resume {experiment.display()}`, or pick another name with "
            "--set name=NEW_NAME"
        )

    check_storage_writable(sweep)
    _join(sweep, address)
    _write_metadata(sweep, experiment)
    log.info(
        "sweep %s: %d trials, %g CPU + %g GPU each, results in %s",
        sweep.name,
        sweep.size,
        sweep.resources.cpu,
        sweep.resources.gpu,
        experiment.display(),
    )
    _quiet_tune()
    return _fit(_tuner(sweep, _callbacks(sweep, show_progress)), experiment)


def resume_sweep(experiment_dir: str, address: str | None = None) -> SweepOutcome:
    """Finish the unfinished trials of an experiment whose driver stopped.

    Finished, diverged and errored trials stay as they are; interrupted ones continue from
    their last checkpoint; grid points never started run now.

    Raises:
        ResultsError: the directory is missing, foreign, or holds no Tune state.
    """
    experiment = Location(experiment_dir)
    sweep, _ = read_metadata(experiment)
    if not experiment.exists("tuner.pkl"):
        raise ResultsError(
            f"{experiment.display()}: no Tune state (tuner.pkl) to resume from; the sweep "
            "stopped before it started. Run it again with `qatsweep run`"
        )

    from ray import tune

    _join(sweep, address)
    log.info("resuming sweep %s in %s", sweep.name, experiment.display())
    _quiet_tune()
    tuner = tune.Tuner.restore(
        experiment.uri,
        trainable=_trainable(sweep),
        resume_unfinished=True,
        resume_errored=False,
        param_space=_param_space(sweep),
    )
    return _fit(tuner, experiment)
