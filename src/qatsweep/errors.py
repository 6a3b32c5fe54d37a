"""The package's error tree: every error a user can cause derives from ``QatSweepError``.

The CLI turns these into a one-line message and exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class QatSweepError(Exception):
    """Base of every error qatsweep raises on purpose."""


class ConfigError(QatSweepError):
    """A trial config, sweep file or command-line value is invalid."""


class DataError(QatSweepError):
    """A data setting cannot produce a usable data set."""


class ResultsError(QatSweepError):
    """An experiment directory or results table is missing, foreign or corrupt."""
