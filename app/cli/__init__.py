"""The `systeme-flow` command: `run` has the service commands, `rules` the ones that check and explain rules."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from app.cli import init, operator, rules, run

__all__ = ["build_parser", "init", "main", "operator", "rules", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="systeme-flow", description="Webhooks in, rules, Systeme.io actions out.")
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_commands(commands)
    rules.add_commands(commands)
    init.add_commands(commands)
    operator.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
