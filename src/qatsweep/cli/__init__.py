"""The ``qatsweep`` command: a thin layer of argparse over the library.

Each subcommand lives in its own module of this package with a ``register(subparsers)``
function that adds its parser and sets ``func``. User errors (``QatSweepError``) become
one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from qatsweep import __version__
from qatsweep.errors import QatSweepError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("train", "run", "export", "analyze")

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like the rest of qatsweep's."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``qatsweep`` parser with every subcommand registered."""
    parser = _Parser(
        prog="qatsweep",
        description="Sweep quantization-aware training over rounding modes with Ray Tune: "
        "train one trial, run or resume a grid, export its tables, analyse the results.",
        epilog="Use -v before the command for progress logs, e.g. qatsweep -v run SWEEP.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"qatsweep {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"qatsweep.cli.{name}").register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    """Send library logs to stderr; stdout is kept for machine-readable output."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Quiet by default: an error is then one line, and progress has the terminal to itself.
    # -v shows what happens (Ray starting, trials finishing, files written), -vv debug.
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.getLogger("qatsweep").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except QatSweepError as err:
        message = " ".join(str(err).split())
        print(f"qatsweep: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("qatsweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
