"""``qatsweep train``: one trial without Ray, final metrics as one JSON object on stdout."""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from typing import Any

from qatsweep.config import TrialConfig

#: Keys of the JSON line, in order; the trainer adds ``epochs_run`` and ``trained_on``.
OUTPUT_KEYS = ("mode", "width", "depth", "seed", "bits", "epochs")


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def add_trial_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrialConfig`` field, defaulting to the study's value.

    Values are passed through as text and validated by ``TrialConfig`` itself, so the
    rules (and error messages) are the same as for sweep files.
    """
    for name, field in TrialConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default
        if _is_bool(field.annotation):
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"(default: {default})",
            )
            continue
        choices = None
        if typing.get_origin(field.annotation) is typing.Literal:
            choices = list(typing.get_args(field.annotation))
        elif isinstance(field.annotation, types.UnionType):
            default = "full" if default is None else default
        parser.add_argument(
            flag,
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"(default: {default})",
            choices=choices,
        )


def trial_config_from_args(args: argparse.Namespace) -> TrialConfig:
    """The validated trial config from the parsed flags (unset flags keep defaults)."""
    values: dict[str, Any] = {}
    for name in TrialConfig.model_fields:
        value = getattr(args, name)
        if value is None:
            continue
        if name == "batch_size" and value == "full":
            value = None
        values[name] = value
    return TrialConfig.parse(values, source="invalid trial parameters")


def _cmd_train(args: argparse.Namespace) -> int:
    config = trial_config_from_args(args)
    from qatsweep.trainer import train  # torch loads only once the arguments are valid

    def on_report(epoch: int, loss: float, train_acc: float, test_acc: float) -> None:
        # Progress for the person watching; stdout stays the one JSON line.
        print(
            f"epoch {epoch}/{config.epochs}  loss {loss:.4f}  train_acc {train_acc:.4f}  "
            f"test_acc {test_acc:.4f}",
            file=sys.stderr,
        )

    result = train(config, on_report=on_report, report_every=args.report_every)
    output = {key: getattr(config, key) for key in OUTPUT_KEYS}
    output.update(result.to_dict())
    print(json.dumps(output))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="run one trial without Ray and print its final metrics as JSON",
        description="Train one trial without Ray and print its final metrics as one JSON "
        "line on stdout; progress goes to stderr. Defaults are the study's.",
    )
    add_trial_flags(parser)
    parser.add_argument(
        "--report-every",
        type=int,
        default=100,
        metavar="N",
        help="log progress to stderr every N epochs (default: 100)",
    )
    parser.set_defaults(func=_cmd_train)
