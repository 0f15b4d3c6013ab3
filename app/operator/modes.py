"""Account modes for operators: what other modes left (at start, on the dashboard), discarding test work, and the
409 for running work of another mode (see app/accounts/modes.py)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes, current_modes, describe, is_test, refusal
from app.accounts.registry import AccountClients, accounts_file, accounts_of
from app.config import Settings
from app.errors import Conflict
from app.store.models import utcnow
from app.store.modes import (
    Discarded,
    Leftover,
    discard_test_data,
    leftovers,
    mode_of_action,
    note_modes,
    recorded_modes,
)
from app.store.outages import STORAGE_OUTAGES
from app.text import counted

log = logging.getLogger(__name__)


def configured_modes(settings: Settings) -> dict[str, str | None]:
    """The accounts' modes as the settings and rules file configure them (for commands with no running service)."""
    return current_modes(accounts_of(settings, accounts_file(settings)))


async def service_modes(engine: AsyncEngine, settings: Settings) -> dict[str, str | None]:
    """For commands beside a running service: the modes the service started under (recorded at its start), else
    this command's own configuration. A CLI run with another `.env` (or none) judges work as the service would."""
    modes: dict[str, str | None] = dict(configured_modes(settings))
    modes.update(await recorded_modes(engine))
    return modes


def leftover_lines(found: list[Leftover]) -> list[str]:
    """One line per other mode, for people: "a dry run: 3 events, 5 actions (2 waiting)"."""
    lines = []
    for left in found:
        waiting = f" ({left.waiting} waiting, never run here)" if left.waiting else ""
        counts = f"{counted(left.events, 'event')}, {counted(left.actions, 'action')}"
        lines.append(f"{describe(left.mode)}: {counts}{waiting}")
    return lines


def discard_hint(found: list[Leftover]) -> str | None:
    if any(is_test(left.mode) for left in found):
        return "remove what test runs left with `systeme-flow discard --test-data`"
    return None


async def start_modes(engine: AsyncEngine, clients: AccountClients) -> list[Leftover]:
    """At start: record each account's mode (a change forgets its contact mirror), and log what other modes left."""
    modes = clients.modes
    try:
        changes = await note_modes(engine, modes, now=utcnow())
        found = await leftovers(engine, modes)
    except STORAGE_OUTAGES as exc:
        # The service starts and answers 503 while its database is down; the modes are recorded at the next start.
        log.warning("the account modes could not be recorded at start: %s", type(exc).__name__)
        return []
    for account, old, new in changes:
        log.warning(
            "account '%s' was %s and is now %s: what the contact mirror learned before is forgotten",
            account,
            describe(old),
            describe(new),
        )
    for line in leftover_lines(found):
        log.warning("left from another mode, not run under the current one: %s", line)
    hint = discard_hint(found)
    if hint:
        log.warning(hint)
    return found


async def refuse_other_mode(engine: AsyncEngine, action_id: str, modes: Modes | None) -> None:
    """A run-now or retry of work planned under another mode is a 409 that says why."""
    if modes is None:
        return
    found = await mode_of_action(engine, action_id)
    if found is None:
        return  # the transition answers 404
    mode, account = found
    if mode is not None and mode != modes.get(account):
        raise Conflict(refusal(action_id, mode, account, modes))


async def discard(engine: AsyncEngine, modes: Modes, *, by: str) -> list[Discarded]:
    gone = await discard_test_data(engine, modes)
    for item in gone:
        log.warning(
            "discarded by %s: %d events and %d actions left from %s", by, item.events, item.actions, describe(item.mode)
        )
    return gone
