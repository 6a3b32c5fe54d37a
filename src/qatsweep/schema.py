"""The one definition of the Parquet tables: column names and Arrow types.

Export writes with these schemas, analysis checks against them and tests compare with
them, so a column can change in one place only. Integers stay integers even when a value
is missing (Arrow nulls, pandas ``Int64``), and modes and statuses are dictionary columns
(pandas ``category``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

_DICT = pa.dictionary(pa.int32(), pa.string())

#: The files of an experiment directory that qatsweep writes.
METADATA_FILE = "qatsweep.json"
TRIALS_FILE = "trials.parquet"
CURVES_FILE = "curves.parquet"

#: Trial statuses. ``finished`` and ``diverged`` are results; ``error`` failed for good;
#: ``running``/``pending`` appear when a live or interrupted experiment is exported.
STATUSES: tuple[str, ...] = ("finished", "diverged", "error", "running", "pending")

#: Columns holding the trial config (every grid axis and every fixed trainer setting).
CONFIG_FIELDS: list[pa.Field] = [
    pa.field("mode", _DICT, nullable=False),
    pa.field("width", pa.int64(), nullable=False),
    pa.field("depth", pa.int64(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("bits", pa.int64(), nullable=False),
    pa.field("per_channel", pa.bool_(), nullable=False),
    pa.field("reduce_range", pa.bool_(), nullable=False),
    pa.field("epochs", pa.int64(), nullable=False),
    pa.field("lr", pa.float64(), nullable=False),
    pa.field("batch_size", pa.int64()),  # null: full batch
    pa.field("n_samples", pa.int64(), nullable=False),
    pa.field("dims", pa.int64(), nullable=False),
    pa.field("noise", pa.float64(), nullable=False),
    pa.field("turns", pa.float64(), nullable=False),
    pa.field("test_fraction", pa.float64(), nullable=False),
    pa.field("threads", pa.int64(), nullable=False),
    pa.field("device", _DICT, nullable=False),  # what the config asked for
]
CONFIG_COLUMNS: list[str] = [f.name for f in CONFIG_FIELDS]

#: Metric columns, shared by both tables.
METRIC_FIELDS: list[pa.Field] = [
    pa.field("loss", pa.float64()),
    pa.field("train_acc", pa.float64()),
    pa.field("test_acc", pa.float64()),
]


def _pandas_dtype(field: pa.Field) -> str:
    if pa.types.is_integer(field.type):
        return "Int64" if field.nullable else "int64"
    if pa.types.is_boolean(field.type):
        return "boolean" if field.nullable else "bool"
    if pa.types.is_dictionary(field.type):
        return "category"
    if pa.types.is_timestamp(field.type):
        return "datetime64[us, UTC]"
    if pa.types.is_floating(field.type):
        return "float64"
    return "string"


def with_pandas_metadata(schema: pa.Schema) -> pa.Schema:
    """Attach pandas metadata so ``pd.read_parquet`` restores nullable integers as ``Int64``.

    Without it a column such as ``batch_size`` (null for full batch) would come back as
    floats; the Arrow types stay what they are for polars, DuckDB and pyarrow readers.
    """
    frame = pd.DataFrame({f.name: pd.Series(dtype=_pandas_dtype(f)) for f in schema})
    metadata = pa.Schema.from_pandas(frame, preserve_index=False).metadata
    return schema.with_metadata(metadata)


TRIALS_SCHEMA = pa.schema(
    [
        # The trial's name, e.g. floor_w16_d4_s0: one per grid point, stable across resumes.
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        *CONFIG_FIELDS,
        pa.field("status", _DICT, nullable=False),
        pa.field("error", pa.string()),
        pa.field("epochs_run", pa.int64()),
        *METRIC_FIELDS,
        pa.field("seconds", pa.float64()),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("tune_trial_id", pa.string()),
        pa.field("node", pa.string()),  # Ray node id: unique per node, even on one host
        pa.field("hostname", pa.string()),
        pa.field("trained_on", pa.string()),  # the device actually used: cpu, cuda:0, ...
        pa.field("qatsweep_version", pa.string()),
        pa.field("torch_version", pa.string()),
        pa.field("ray_version", pa.string()),
        pa.field("python_version", pa.string()),
        pa.field("git_rev", pa.string()),
    ]
)
TRIALS_SCHEMA = with_pandas_metadata(TRIALS_SCHEMA)

CURVES_SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        *CONFIG_FIELDS,
        pa.field("epoch", pa.int64(), nullable=False),
        *METRIC_FIELDS,
    ]
)
CURVES_SCHEMA = with_pandas_metadata(CURVES_SCHEMA)

#: Columns the analysis needs at the least.
ANALYSIS_REQUIRED: tuple[str, ...] = ("mode", "width", "depth", "seed", "status", "test_acc")
