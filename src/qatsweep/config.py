"""The typed, validated settings of one trial.

``TrialConfig`` is built once (from CLI flags or from one point of a sweep grid) and
passed down the pipeline; nothing below it re-reads raw dictionaries.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qatsweep.errors import ConfigError

#: Rounding rules of the fake quantizer. ``baseline`` trains the float model.
ROUNDING_MODES: tuple[str, ...] = (
    "nearest",
    "floor",
    "ceil",
    "half_away",
    "toward_zero",
    "stochastic",
)
MODES: tuple[str, ...] = ("baseline", *ROUNDING_MODES)

Mode = Literal["baseline", "nearest", "floor", "ceil", "half_away", "toward_zero", "stochastic"]
Device = Literal["auto", "cpu", "cuda"]


class TrialConfig(BaseModel):
    """Everything that determines one trial's result.

    Defaults are the study's (``../shared/SPEC.md``) plus the choices it left open:
    spiral noise 0.05 over 1.5 turns, a stratified 80/20 train/test split, features
    standardized with train-set statistics, full-batch training.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "nearest"
    width: int = Field(32, ge=1, le=65536)
    depth: int = Field(2, ge=1, le=1000)
    seed: int = Field(0, ge=0, lt=2**31)
    bits: int = Field(8, ge=2, le=8)
    per_channel: bool = False
    reduce_range: bool = False
    epochs: int = Field(3000, ge=0)
    lr: float = Field(1e-4, gt=0, allow_inf_nan=False)
    batch_size: int | None = Field(None, ge=1)
    n_samples: int = Field(2000, ge=10)
    dims: int = Field(100, ge=2)
    noise: float = Field(0.05, ge=0, allow_inf_nan=False)
    turns: float = Field(1.5, gt=0, allow_inf_nan=False)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    threads: int = Field(1, ge=1)
    device: Device = "auto"

    @model_validator(mode="after")
    def _check_combinations(self) -> TrialConfig:
        if self.reduce_range and self.bits < 3:
            raise ValueError("reduce_range needs bits >= 3 (it drops one bit of activations)")
        n_test = round(self.n_samples * self.test_fraction)
        if n_test < 2 or self.n_samples - n_test < 2:
            raise ValueError(
                f"test_fraction {self.test_fraction} of n_samples {self.n_samples} leaves "
                "fewer than 2 points on one side of the split"
            )
        return self

    @property
    def quantized(self) -> bool:
        """Whether the model is prepared for QAT (every mode but ``baseline``)."""
        return self.mode != "baseline"

    @classmethod
    def parse(cls, values: dict[str, Any], source: str = "trial config") -> TrialConfig:
        """Validate ``values``, raising ``ConfigError`` with a one-line message."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise ConfigError(f"{source}: {describe_validation_error(err)}") from err


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """Condense a pydantic error into one line that names each bad field and value."""
    parts = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if prefix:
            loc = f"{prefix}.{loc}"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif "input" in item and item["type"] != "missing":
            message = f"{message} (got {item['input']!r})"
        parts.append(f"{loc}: {message}")
    return "; ".join(parts).replace("\n", " ")
