"""Sweep files: a YAML description of a grid of trials, validated before anything starts.

A sweep file holds

- ``name`` — the experiment, a directory under ``storage``;
- ``storage`` — where experiments go: a local or shared (NFS) path, relative paths taken
  from the current directory, or an ``s3://``/``gs://`` URI;
- ``grid`` — the axes: any trial setting (``mode``, ``width``, ``depth``, ``seed``,
  ``bits``, ``per_channel``, ``lr``, ``epochs``, …) mapped to a non-empty list;
- fixed trial settings at the top level (``epochs: 300``), the same names as the axes;
- ``resources`` — what one trial needs: whole ``cpu`` (also its torch thread count), an
  optional, possibly fractional, ``gpu``, Ray ``custom`` resources, and ``overrides`` for
  some grid points (``- {when: {width: [128]}, gpu: 0.5}``);
- ``max_concurrent`` — trials at once (default: as many as the resources allow);
- ``report_every`` — epochs between reports (curves, TensorBoard, progress);
- ``checkpoint_every`` — epochs between a trial's checkpoints (taken at the next report);
- ``max_failures`` — retries of a trial that raised, each from its last checkpoint.

``--set key=value`` edits the file's values before validation; the value is read as YAML
(``--set grid.width=[16,32] --set epochs=200``). Setting ``grid.lr`` turns a fixed ``lr``
into an axis, and setting ``epochs`` fixes what was an axis.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qatsweep.config import TrialConfig, describe_validation_error
from qatsweep.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as text; sweep files mean the number, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$"
        r"|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


#: Trial settings that come from ``resources`` rather than from the sweep file.
DERIVED_SETTINGS = {"threads": "resources.cpu", "device": "resources.gpu"}


def _check_gpu(gpu: float | None) -> float | None:
    if gpu is not None and gpu > 1 and not float(gpu).is_integer():
        raise ValueError("a gpu request above 1 must be a whole number (Ray's rule)")
    return gpu


class ResourceOverride(BaseModel):
    """Other resources for the grid points whose axis values match ``when``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: dict[str, list[Any]] = Field(min_length=1)
    cpu: int | None = Field(None, ge=1)
    gpu: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    custom: dict[str, float] | None = None

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float | None) -> float | None:
        return _check_gpu(gpu)

    def matches(self, point: dict[str, Any]) -> bool:
        """Whether ``point`` has one of the listed values on every axis of ``when``."""
        return all(point.get(axis) in values for axis, values in self.when.items())


class Resources(BaseModel):
    """What one trial reserves on a Ray node.

    ``cpu`` is whole CPUs and also the trial's torch thread count; ``gpu`` may be a
    fraction; ``custom`` names Ray custom resources (``{accel_node: 1}``) that pin trials
    to the nodes that offer them. ``overrides`` change these for some grid points, e.g.
    GPUs for the widest models only; the first matching override wins.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: int = Field(1, ge=1)
    gpu: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    custom: dict[str, float] = Field(default_factory=dict)
    overrides: list[ResourceOverride] = Field(default_factory=list)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        return _check_gpu(gpu) or 0.0

    def for_point(self, point: dict[str, Any]) -> Resources:
        """The resources of one grid point, overrides applied."""
        for override in self.overrides:
            if override.matches(point):
                changes = {
                    k: v for k, v in override.model_dump(exclude={"when"}).items() if v is not None
                }
                return self.model_copy(update={**changes, "overrides": []})
        return self.model_copy(update={"overrides": []})

    def ray_request(self) -> dict[str, float]:
        """The bundle Ray schedules: CPUs always, beside any fraction of a GPU."""
        request = {"CPU": float(self.cpu), **self.custom}
        if self.gpu > 0:
            request["GPU"] = self.gpu
        return request


class SweepConfig(BaseModel):
    """A validated sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    storage: str = "results"
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    trial: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=lambda: Resources())
    max_concurrent: int | None = Field(None, ge=1)
    report_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    max_failures: int = Field(2, ge=0)

    @property
    def axes(self) -> list[str]:
        """Grid axes in file order."""
        return list(self.grid)

    @property
    def size(self) -> int:
        """The number of grid points (trials)."""
        return math.prod(len(values) for values in self.grid.values())

    def points(self) -> list[dict[str, Any]]:
        """Every grid point as a dict of axis values, in a stable order."""
        keys = self.axes
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*self.grid.values())
        ]

    def trial_config(self, point: dict[str, Any]) -> TrialConfig:
        """The full trial config of one grid point; threads and device follow its resources."""
        resources = self.resources.for_point(point)
        values = {
            **self.trial,
            **point,
            "threads": resources.cpu,
            "device": "cuda" if resources.gpu > 0 else "cpu",
        }
        return TrialConfig.parse(values, source=f"grid point {point}")

    @property
    def storage_is_uri(self) -> bool:
        """An object store (``s3://``, ``gs://``...); ``file://`` counts as a local path."""
        return "://" in self.storage and not self.storage.startswith("file://")

    def resolved_storage(self, base: Path | None = None) -> str:
        """``storage`` as an absolute path (Tune fails inside pyarrow on relative ones)."""
        if self.storage_is_uri:
            return self.storage
        path = Path(self.storage.removeprefix("file://")).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return str(path.resolve())

    def experiment_path(self, base: Path | None = None) -> str:
        """Where this experiment's directory is (or will be)."""
        return f"{self.resolved_storage(base).rstrip('/')}/{self.name}"


def _check_trial_settings(raw: dict[str, Any], source: str) -> None:
    """Check fixed settings and every axis value against ``TrialConfig`` with precise keys."""
    trial, grid = raw.get("trial", {}), raw.get("grid", {})
    for key, where in DERIVED_SETTINGS.items():
        if key in trial or key in grid:
            raise ConfigError(f"{source}: {key}: set by {where}, not in the sweep file")

    for key in grid:
        if key in trial:
            raise ConfigError(f"{source}: {key}: both fixed and a grid axis; keep one")
        if key not in TrialConfig.model_fields:
            raise ConfigError(f"{source}: grid.{key}: unknown key (not a trial setting)")
    try:
        TrialConfig.model_validate(trial)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe_validation_error(err)}") from err

    for key, values in grid.items():
        for index, value in enumerate(values):
            try:
                TrialConfig.model_validate({**trial, key: value})
            except ValidationError as err:
                message = describe_validation_error(err).split(": ", 1)[-1]
                raise ConfigError(f"{source}: grid.{key}[{index}]: {message}") from err


def validate_sweep(raw: Any, source: str) -> SweepConfig:
    """Validate a parsed sweep file, raising ``ConfigError`` with a one-line message."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a sweep file must be a mapping of keys to values")

    sweep_keys = set(SweepConfig.model_fields) - {"trial"}
    values: dict[str, Any] = {"trial": {}}
    for key, value in raw.items():
        if key in sweep_keys:
            values[key] = value
        elif key in TrialConfig.model_fields:
            values["trial"][key] = value
        else:
            raise ConfigError(f"{source}: {key}: unknown key")

    try:
        sweep = SweepConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe_validation_error(err)}") from err
    for key, axis in sweep.grid.items():
        if not axis:
            raise ConfigError(f"{source}: grid.{key}: an axis needs at least one value")
        if len({repr(v) for v in axis}) != len(axis):
            raise ConfigError(f"{source}: grid.{key}: repeated values {axis}")
    _check_trial_settings(values, source)
    for index, override in enumerate(sweep.resources.overrides):
        for name, chosen in override.when.items():
            where = f"{source}: resources.overrides[{index}].when.{name}"
            if name not in sweep.grid:
                raise ConfigError(f"{where}: not a grid axis")
            unknown = [v for v in chosen if v not in sweep.grid[name]]
            if unknown:
                raise ConfigError(f"{where}: {unknown} not on the grid {sweep.grid[name]}")
    for point in sweep.points():  # combinations, e.g. reduce_range with 2 bits
        sweep.trial_config(point)
    return sweep


def parse_override(text: str) -> tuple[list[str], Any]:
    """``grid.width=[16,32]`` → (["grid", "width"], [16, 32]); the value is YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set epochs=200")
    try:
        parsed = _yaml(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from err
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` edits to a parsed sweep file, returning a new dict."""
    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a mapping")
            node = child
        node[path[-1]] = value
        # A setting is either an axis or fixed: --set moves it to where it was set.
        if path[0] == "grid" and len(path) == 2:
            result.pop(path[1], None)
        elif len(path) == 1 and isinstance(result.get("grid"), dict):
            result["grid"].pop(path[0], None)
    return result


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read, override and validate a sweep file.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{source}: no such sweep file") from err
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as err:
        raise ConfigError(f"{source}: cannot read it as a sweep file ({err})") from err
    try:
        raw = _yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from err
    if raw is None:
        raise ConfigError(f"{source}: the sweep file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a sweep file must be a mapping of keys to values")
    return validate_sweep(apply_overrides(raw, overrides or []), source)


def sweep_to_dict(sweep: SweepConfig) -> dict[str, Any]:
    """The sweep as it would be written in a file (fixed settings back at the top level)."""
    data = sweep.model_dump(mode="json")
    trial = data.pop("trial")
    return {**data, **trial}
