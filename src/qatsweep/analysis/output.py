"""Writing the report's files: atomic replacement and JSON-ready values.

Every file is first written to a hidden temporary file in its final directory and then
moved over the target with ``os.replace``, so a reader (or a second ``analyze`` running at
the same time) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then move it onto ``path``.

    The temporary file lives in the same directory because ``os.replace`` is atomic only
    within one file system; it is removed if ``write`` fails.
    """
    handle = tempfile.NamedTemporaryFile(
        mode="wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    logger.info("wrote %s", path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON (no NaN) to ``path`` atomically."""
    text = json.dumps(to_python(data), indent=2, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def to_python(value: Any) -> Any:
    """Turn numpy and pandas scalars into plain Python, and NaN or NA into ``None``.

    The summary is built from pandas results, whose scalars (``np.float64``, ``pd.NA``)
    the ``json`` module either rejects or writes as the non-standard ``NaN``.
    """
    if isinstance(value, dict):
        return {str(key): to_python(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_python(item) for item in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
