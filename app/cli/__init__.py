"""The `systeme-flow` command: `run` has the service commands, `rules` the ones that check and explain rules."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO, cast

from app.cli import (
    connections,
    discard,
    doctor,
    init,
    mirror,
    operator,
    payments,
    reconcile,
    rules,
    run,
    send,
    story,
    webhooks,
)
from app.text import escape_controls

__all__ = [
    "build_parser",
    "connections",
    "discard",
    "doctor",
    "init",
    "main",
    "mirror",
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
    payments.add_commands(commands)
    story.add_commands(commands)
    reconcile.add_commands(commands)
    send.add_commands(commands)
    connections.add_commands(commands)
    webhooks.add_commands(commands)
    discard.add_commands(commands)
    doctor.add_commands(commands)
    mirror.add_commands(commands)
    return parser


class _Escaping:
    """The command's stdout or stderr: what it prints keeps its lines, and every other control character is
    written as an escape. Event types, emails and errors come from payloads and unsigned headers; raw, an ESC or
    BEL in one would drive the operator's terminal (clear the screen, set the title)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escape_controls(text, keep_lines=True))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> None:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = cast(TextIO, _Escaping(sys.stdout)), cast(TextIO, _Escaping(sys.stderr))
    try:
        _main(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            # sys.exit("message") is printed by the interpreter after main returns: escape it here instead.
            sys.stderr.write(exc.code + "\n")
            raise SystemExit(1) from None
        raise
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): what it wanted is printed; no traceback, and nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(2)
