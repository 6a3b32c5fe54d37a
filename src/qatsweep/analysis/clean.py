"""Which trials the findings use, which grid cells lack a result, which axes split them.

A trial is left out by the first of these rules that applies, and reported under it:

1. a trial without a value in ``mode``, ``width``, ``depth``, ``seed`` or ``status``;
2. a trial whose status is anything but ``finished`` (``error``, ``diverged``, ``running``,
   ``pending``): a diverged trial has no accuracy worth averaging, and an unfinished one
   has no final accuracy yet;
3. a finished trial without a finite ``test_acc``;
4. a repeat of the same mode, configuration and seed (a re-run): the later one is kept,
   by ``started_at`` when the table has it, else by row order.

The *grid* is the product of the values each key column and each extra axis takes in the
table; a grid cell (one mode, configuration and seed) without a used trial is *missing*.
NOTE: a search space that is not a grid (random search over ``lr``, say) makes that product
much larger than the table; the cells are then not listed (``missing_cells`` is ``None``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd

from qatsweep.analysis.output import to_python
from qatsweep.config import MODES
from qatsweep.schema import CONFIG_COLUMNS

logger = logging.getLogger(__name__)

#: The columns that place a trial in the study's grid.
KEYS: tuple[str, ...] = ("mode", "width", "depth", "seed")

#: Above this many grid cells per trial the table is taken for a non-grid search.
_GRID_SLACK = 4


@dataclass(frozen=True)
class Trials:
    """The trials the statistics use, and an account of the ones they do not.

    ``used`` has one row per used trial with the columns ``trial_id``, ``mode``, ``width``,
    ``depth``, ``seed``, every extra axis, ``test_acc``, and two integer labels: ``config``
    (one per configuration: extra axes, width and depth) and ``cell`` (configuration and
    seed), which later steps group and pair on.
    """

    used: pd.DataFrame
    axes: list[str]
    n_trials: int
    excluded: list[dict[str, Any]] = field(default_factory=list)
    missing_cells: list[dict[str, Any]] | None = None
    grid_cells: int = 0


def prepare(trials: pd.DataFrame) -> Trials:
    """Sort the trials of a loaded table into used and excluded, and find missing cells."""
    frame = trials.copy()
    if "trial_id" not in frame:
        frame["trial_id"] = [f"row {index}" for index in range(len(frame))]
    axes = extra_axes(frame)
    for column in ["mode", "status", *axes]:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object)
    frame["test_acc"] = frame["test_acc"].to_numpy(dtype="float64", na_value=np.nan)

    frame["reason"] = _reasons(frame, axes)
    used = frame[frame["reason"].isna()]
    excluded = frame[frame["reason"].notna()]
    if len(excluded):
        logger.warning(
            "left out %d of %d trials: %s",
            len(excluded),
            len(frame),
            ", ".join(f"{n} {s}" for s, n in excluded["status"].value_counts().items()),
        )

    grid, missing = _missing_cells(frame, used, axes)
    columns = ["trial_id", *KEYS, *axes]
    return Trials(
        used=_label(used[[*columns, "test_acc"]], axes),
        axes=axes,
        n_trials=len(frame),
        excluded=to_python(excluded[[*columns, "status", "reason"]].to_dict("records")),
        missing_cells=missing,
        grid_cells=grid,
    )


#: Config columns that follow a trial's resources, not the design: a GPU override for the
#: widest models must not split the findings into a cpu and a cuda group.
NOT_DESIGN = ("threads", "device")


def extra_axes(trials: pd.DataFrame) -> list[str]:
    """Config columns besides the study's keys that take more than one value in the table.

    Counted over every trial, used or not, so that a bit width whose trials all failed
    still shows up as its own group instead of vanishing into the others.
    """
    return [
        column
        for column in CONFIG_COLUMNS
        if column not in KEYS
        and column not in NOT_DESIGN
        and column in trials
        and trials[column].nunique(dropna=False) > 1
    ]


def order_modes(modes: Any) -> list[str]:
    """The package's order of modes (baseline first), then unknown ones alphabetically."""
    present = {str(mode) for mode in modes}
    return [m for m in MODES if m in present] + sorted(present.difference(MODES))


def _reasons(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Why each trial is left out, or NA for a trial the findings use.

    The rules are applied from last to first so that the first one that holds is the one
    a trial is reported under.
    """
    nulls = frame[[*KEYS, "status"]].isna()
    no_key = nulls.any(axis=1)
    status = frame["status"].astype(object)
    errors = frame["error"] if "error" in frame else pd.Series(None, index=frame.index)
    status_text = pd.Series(
        [_status_text(s, e) for s, e in zip(status, errors, strict=True)],
        index=frame.index,
        dtype=object,
    )

    reasons = pd.Series(pd.NA, index=frame.index, dtype=object)
    reasons = reasons.mask(~np.isfinite(frame["test_acc"]), "finished without a finite test_acc")
    reasons = reasons.mask(status.ne("finished"), status_text)
    if no_key.any():
        names = nulls[no_key].apply(lambda row: ", ".join(row.index[row]), axis=1)
        reasons[no_key] = "no value for " + names

    # A re-run repeats a grid point; keeping both would pair a trial with itself.
    order = frame.sort_values("started_at", kind="stable") if "started_at" in frame else frame
    candidates = order[reasons[order.index].isna()]
    keys = [*KEYS, *axes]
    kept = candidates.groupby(keys, dropna=False)["trial_id"].transform("last")
    repeated = candidates.duplicated(subset=keys, keep="last")
    reasons[repeated[repeated].index] = (
        "repeat of the same mode, configuration and seed; kept trial " + kept[repeated].astype(str)
    )
    return reasons


def _status_text(status: object, error: object) -> str:
    """The status, with the first line of the trial's error message when it has one."""
    lines = [] if pd.isna(error) else str(error).strip().splitlines()
    return f"{status}: {lines[0][:200]}" if lines else str(status)


def _missing_cells(
    frame: pd.DataFrame, used: pd.DataFrame, axes: list[str]
) -> tuple[int, list[dict[str, Any]] | None]:
    """The size of the grid and the cells of it without a used trial (``None``: no grid)."""
    columns = [*axes, "width", "depth", "seed", "mode"]
    keyed = frame[frame[list(KEYS)].notna().all(axis=1)]
    levels = [pd.DataFrame({c: _sorted_unique(keyed[c])}) for c in columns[:-1]]
    levels.append(pd.DataFrame({"mode": order_modes(keyed["mode"].unique())}))
    size = math.prod(len(level) for level in levels)
    if size > _GRID_SLACK * max(len(frame), 1):
        logger.info("the trials cover %d of %d grid cells: not a grid", len(used), size)
        return size, None

    grid = reduce(lambda left, right: left.merge(right, how="cross"), levels)
    grid = grid.merge(used[columns].assign(_used=True), on=columns, how="left")
    missing = grid[grid["_used"].isna()].drop(columns="_used")

    excluded = keyed[keyed["reason"].notna()]
    statuses = excluded.groupby(columns, dropna=False)["status"].agg(
        lambda s: "excluded: " + ", ".join(sorted(set(map(str, s))))
    )
    missing = missing.merge(statuses.rename("reason").reset_index(), on=columns, how="left")
    missing["reason"] = missing["reason"].fillna("no trial")
    return size, to_python(missing[[*KEYS, *axes, "reason"]].to_dict("records"))


def _sorted_unique(values: pd.Series) -> pd.Series:
    return values.drop_duplicates().sort_values(na_position="last").reset_index(drop=True)


def _label(used: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Add the integer ``config`` and ``cell`` labels and sort the rows by them."""
    config = [*axes, "width", "depth"]
    labelled = used.assign(
        config=used.groupby(config, dropna=False, sort=True).ngroup(),
        cell=used.groupby([*config, "seed"], dropna=False, sort=True).ngroup(),
    )
    return labelled.sort_values(["cell", "mode"], kind="stable").reset_index(drop=True)
