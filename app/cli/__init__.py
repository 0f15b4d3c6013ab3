"""The `systeme-flow` command: `run` has the service commands, `rules` the ones that check and explain rules."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from app.cli import connections, discard, doctor, init, operator, reconcile, rules, run, send, webhooks

__all__ = [
    "build_parser",
    "connections",
    "discard",
    "doctor",
    "init",
    "main",
    "operator",
    "reconcile",
    "rules",
    "run",
    "send",
    "webhooks",
]


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr and exit status 2, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="systeme-flow", description="Webhooks in, rules, Systeme.io actions out.")
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_commands(commands)
    rules.add_commands(commands)
    init.add_commands(commands)
    operator.add_commands(commands)
    reconcile.add_commands(commands)
    send.add_commands(commands)
    connections.add_commands(commands)
    webhooks.add_commands(commands)
    discard.add_commands(commands)
    doctor.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): what it wanted is printed; no traceback, and nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(2)
