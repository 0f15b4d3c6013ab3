"""`discard --test-data`: remove what dry runs and the simulator left, once a real account is configured; and the
lines `serve` prints about it at start (see app/accounts/modes.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import select
import sys
from typing import Any

from app.accounts.modes import Modes, describe, is_test
from app.cli.run import database_errors, settings_or_exit
from app.config import Settings
from app.logs import configure_logging
from app.operator.modes import configured_modes, discard, discard_hint, leftover_lines, service_modes
from app.rules.schema import DEFAULT_ACCOUNT
from app.store.modes import Leftover, leftovers
from app.text import counted

log = logging.getLogger(__name__)
# How long the question waits for an answer: a person at a terminal gets time to read it; a script that gave no
# answer (stdin open but silent) is a "no", never a hang.
ANSWER_SECONDS = {True: 120.0, False: 2.0}


def ask(question: str) -> bool:
    """Ask on stderr; only y or yes agrees. No answer in time, an empty or a closed stdin is a no."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return False
    try:
        ready, _, _ = select.select([stdin], [], [], ANSWER_SECONDS[stdin.isatty()])
    except (OSError, ValueError):  # not a selectable file (a test's StringIO): read what it holds
        ready = [stdin]
    if not ready:
        sys.stderr.write("\n(no answer: nothing was removed)\n")
        return False
    return stdin.readline().strip().lower() in ("y", "yes")


async def _leftovers(settings: Settings, modes: Modes) -> list[Leftover]:
    from app.store.db import create_engine

    engine = create_engine(settings.database_url)
    try:
        return await leftovers(engine, modes)
    finally:
        await engine.dispose()


def startup_leftover_lines(settings: Settings) -> list[str]:
    """For `serve`'s banner: what other modes left, which this configuration never runs."""
    with database_errors("serve", settings):
        found = asyncio.run(_leftovers(settings, configured_modes(settings)))
    if not found:
        return []
    lines = ["  left over: work stored under other modes, never run under this one:"]
    lines += [f"    {line}" for line in leftover_lines(found)]
    hint = discard_hint(found)
    return lines + ([f"    {hint}"] if hint else [])


async def _listed(settings: Settings) -> tuple[Modes, list[Leftover]]:
    from app.store.db import create_engine

    engine = create_engine(settings.database_url)
    try:
        # The modes the service runs under (recorded at its start): what it would never run is what goes.
        modes = await service_modes(engine, settings)
        return modes, [left for left in await leftovers(engine, modes) if is_test(left.mode)]
    finally:
        await engine.dispose()


def cmd_discard(args: argparse.Namespace) -> None:
    settings = settings_or_exit()
    configure_logging(secrets=settings.secret_values(), style=settings.log_format)
    with database_errors("discard", settings):
        modes, found = asyncio.run(_listed(settings))
    now = describe(modes.get(DEFAULT_ACCOUNT))
    if not found:
        print(f"nothing to discard: no work of a dry run or a simulator other than the current mode ({now})")
        return
    print(f"the account is now {now}; left from test runs:")
    for line in leftover_lines(found):
        print(f"  {line}")
    if not args.yes and not ask("remove these events and actions for good?"):
        print("nothing removed")
        return

    async def run() -> Any:
        from app.store.db import create_engine

        engine = create_engine(settings.database_url)
        try:
            return await discard(engine, modes, by="cli")
        finally:
            await engine.dispose()

    with database_errors("discard", settings):
        gone = asyncio.run(run())
    for item in gone:
        print(f"removed {counted(item.events, 'event')} and {counted(item.actions, 'action')} of {describe(item.mode)}")


def add_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "discard", help="remove what dry runs and the simulator left (--test-data), once a real account is set"
    )
    parser.add_argument(
        "--test-data",
        action="store_true",
        required=True,
        help="the events and actions stored under a dry run or a simulator other than the current mode",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask before removing")
    parser.set_defaults(func=cmd_discard)
