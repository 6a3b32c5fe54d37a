"""Read a results table: a ``trials.parquet`` file or a Tune experiment directory.

This module checks the *shape* of the input — the file reads, it has rows, and the columns
the analysis needs are there with usable types — and turns it into a pandas frame.
Which trials count is decided later, in :mod:`qatsweep.analysis.clean`.

Integer columns become pandas' nullable ``Int64`` so that a missing value (a full-batch
``batch_size``) stays missing instead of turning the column into floats.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qatsweep.errors import ResultsError
from qatsweep.schema import ANALYSIS_REQUIRED, METADATA_FILE, TRIALS_FILE

logger = logging.getLogger(__name__)


#: What each required column must hold, as a check on its Arrow type.
_KINDS: dict[str, str] = {
    "mode": "text",
    "status": "text",
    "width": "integer",
    "depth": "integer",
    "seed": "integer",
    "test_acc": "number",
}


def load_trials(results: Path) -> pd.DataFrame:
    """Read the trials table at ``results`` and check it can be analysed.

    Args:
        results: a Parquet file, or a directory holding ``trials.parquet`` or a Tune
            experiment (exported on the fly with ``qatsweep.export.build_tables``).

    Returns:
        One row per trial, with at least the columns of ``ANALYSIS_REQUIRED``.

    Raises:
        ResultsError: the path is missing, unreadable, not Parquet, empty, or lacks a
            required column or type.
    """
    table = read_table(results)
    check_table(table, results)
    logger.info("read %d trials from %s", table.num_rows, results)
    return table.to_pandas(types_mapper=_nullable_integers)


def read_table(results: Path) -> pa.Table:
    """Read the trials table from a Parquet file or an experiment directory."""
    if not results.exists():
        raise ResultsError(
            f"results path {results} does not exist; pass a {TRIALS_FILE} file or a Tune "
            "experiment directory"
        )
    if not results.is_dir():
        return _read_parquet(results)

    if (results / METADATA_FILE).is_file():
        # An experiment: rebuild from its trials, never trust a trials.parquet that a
        # run, resume or export wrote earlier and that may be out of date.
        return _export_experiment(results)
    if (results / TRIALS_FILE).is_file():
        return _read_parquet(results / TRIALS_FILE)
    raise ResultsError(
        f"directory {results} holds neither a qatsweep experiment ({METADATA_FILE}) nor a "
        f"{TRIALS_FILE}; pass one of those"
    )


def check_table(table: pa.Table, source: Path) -> None:
    """Raise ``ResultsError`` unless ``table`` has rows and the required typed columns."""
    if table.num_rows == 0:
        raise ResultsError(f"results table {source} is empty: it has no trials to analyse")

    missing = [name for name in ANALYSIS_REQUIRED if name not in table.column_names]
    if missing:
        raise ResultsError(
            f"results table {source} lacks the columns the analysis needs: {', '.join(missing)}"
        )

    for name, kind in _KINDS.items():
        arrow_type = table.schema.field(name).type
        if not _is_kind(arrow_type, kind):
            raise ResultsError(
                f"column {name!r} of {source} has type {arrow_type}; the analysis needs "
                f"{kind} values there"
            )


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResultsError(f"{path} is not a readable Parquet file: {reason}") from err


def _export_experiment(directory: Path) -> pa.Table:
    """The current trials table of a Tune experiment directory."""
    # Imported here: reading a Parquet file needs neither the exporter nor its sweep code.
    from qatsweep.export import build_tables

    trials, _curves = build_tables(directory)
    return trials


def _is_kind(arrow_type: pa.DataType, kind: str) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if kind == "text":
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if kind == "integer":
        return pa.types.is_integer(arrow_type)
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def _nullable_integers(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    return pd.Int64Dtype() if pa.types.is_integer(arrow_type) else None
