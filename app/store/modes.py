"""Stored work by account mode (app/accounts/modes.py): what runs now, what other modes left, and removing test work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.accounts.modes import DRY_RUN, Modes, is_test
from app.payments.configured import payment_in, recognizes
from app.rules.schema import DEFAULT_ACCOUNT, SourceConfig
from app.store.models import account_modes, actions, api_calls, contacts, events, mirror_syncs, rule_outcomes

WAITING = ("pending", "scheduled", "awaiting_approval", "running")


def runnable(modes: Modes | None) -> sa.ColumnElement[bool]:
    """Actions that may run now: planned under their account's current mode, or from before modes were recorded."""
    if modes is None:
        return sa.true()
    same = [sa.and_(actions.c.account == name, actions.c.mode == mode) for name, mode in modes.items() if mode]
    return sa.or_(actions.c.mode.is_(None), *same)


def _other_mode(modes: Modes) -> sa.ColumnElement[bool]:
    return sa.and_(actions.c.mode.is_not(None), sa.not_(runnable(modes)))


def _went_live() -> sa.ColumnElement[bool]:
    """The event has an action planned for a live account (a named account with its own key, while the default one
    was a dry run): that account's history, so the event stays and only its test actions go."""
    other = actions.alias("live_actions")
    live = sa.or_(other.c.mode.is_(None), other.c.mode.startswith("live:"))
    return sa.select(other.c.id).where(other.c.event_id == events.c.id, live).correlate(events).exists()


@dataclass(frozen=True)
class Leftover:
    """Work of one mode that the current configuration will not run."""

    mode: str
    events: int
    actions: int
    waiting: int  # pending, scheduled, awaiting approval: what would have run


async def leftovers(engine: AsyncEngine, modes: Modes) -> list[Leftover]:
    """Per other mode: its events (arrived under it) and actions (planned under it), test modes first."""
    async with engine.connect() as conn:
        by_action = await conn.execute(
            sa.select(
                actions.c.mode,
                sa.func.count(),
                sa.func.count(sa.case((actions.c.status.in_(WAITING), 1))),
            )
            .where(_other_mode(modes))
            .group_by(actions.c.mode)
        )
        counts: dict[str, list[int]] = {row[0]: [0, row[1], row[2]] for row in by_action}
        by_event = await conn.execute(
            sa.select(events.c.mode, sa.func.count())
            .where(events.c.mode.is_not(None), events.c.mode != (modes.get(DEFAULT_ACCOUNT) or ""), ~_went_live())
            .group_by(events.c.mode)
        )
        for mode, count in by_event:
            counts.setdefault(mode, [0, 0, 0])[0] = count
    found = [Leftover(mode, *numbers) for mode, numbers in counts.items()]
    return sorted(found, key=lambda f: (not is_test(f.mode), f.mode != DRY_RUN, f.mode))


@dataclass(frozen=True)
class Discarded:
    mode: str
    events: int
    actions: int


async def discard_test_data(engine: AsyncEngine, modes: Modes) -> list[Discarded]:
    """Remove what dry runs and simulators left that the current configuration does not run: their actions (with
    their API calls), and their events (with every outcome and action). Work of the current mode, and of other live
    accounts, stays."""
    test_modes = [left.mode for left in await leftovers(engine, modes) if is_test(left.mode)]
    async with engine.begin() as conn:
        return [await _discard_mode(conn, mode, modes) for mode in test_modes]


async def _discard_mode(conn: AsyncConnection, mode: str, modes: Modes) -> Discarded:
    current = modes.get(DEFAULT_ACCOUNT) or ""
    event_ids = select_ids(events.c.id, sa.and_(events.c.mode == mode, events.c.mode != current, ~_went_live()))
    doomed = sa.or_(sa.and_(actions.c.mode == mode, _other_mode(modes)), actions.c.event_id.in_(event_ids))
    action_ids = select_ids(actions.c.id, doomed)
    # Explicit deletes, child rows first: the same on both stores whatever their foreign-key settings.
    await conn.execute(api_calls.delete().where(api_calls.c.action_id.in_(action_ids)))
    removed_actions = (await conn.execute(actions.delete().where(actions.c.id.in_(action_ids)))).rowcount
    await conn.execute(rule_outcomes.delete().where(rule_outcomes.c.event_id.in_(event_ids)))
    removed_events = (await conn.execute(events.delete().where(events.c.id.in_(event_ids)))).rowcount
    return Discarded(mode, removed_events, removed_actions)


def select_ids(column: sa.Column[Any], where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    # Materialised by the database (a subquery of the table being deleted from is fine on both stores).
    return sa.select(column).where(where)


async def note_modes(engine: AsyncEngine, modes: Modes, *, now: datetime) -> list[tuple[str, str, str]]:
    """Record the mode each account starts under; for each account whose mode changed, forget the contact mirror
    (the ids and tags learned in a simulator are other people's, or nobody's, in a live account) and its sync. Returns
    (account, old mode, new mode) for each change."""
    try:
        return await _note_modes(engine, modes, now)
    except IntegrityError:
        # Another process (the API and a worker start together) recorded the same row first: read it again.
        return await _note_modes(engine, modes, now)


async def _note_modes(engine: AsyncEngine, modes: Modes, now: datetime) -> list[tuple[str, str, str]]:
    changed: list[tuple[str, str, str]] = []
    async with engine.begin() as conn:
        known = {r.account: r.mode for r in await conn.execute(sa.select(account_modes))}
        for account, mode in modes.items():
            if mode is None or known.get(account) == mode:
                continue
            if account in known:
                changed.append((account, known[account], mode))
                await conn.execute(account_modes.delete().where(account_modes.c.account == account))
            await conn.execute(contacts.delete().where(contacts.c.account == account))
            await conn.execute(mirror_syncs.delete().where(mirror_syncs.c.account == account))
            await conn.execute(account_modes.insert().values(account=account, mode=mode, since=now))
    return changed


async def recorded_modes(engine: AsyncEngine) -> dict[str, str]:
    """The mode each account last started under (by `serve` or a worker)."""
    async with engine.connect() as conn:
        return {r.account: r.mode for r in await conn.execute(sa.select(account_modes))}


async def mode_of_action(engine: AsyncEngine, action_id: str) -> tuple[str | None, str] | None:
    """(mode, account) of an action; None when there is no such action."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(actions.c.mode, actions.c.account).where(actions.c.id == action_id))
        ).first()
    return (row.mode, row.account) if row is not None else None


@dataclass(frozen=True)
class ModeWork:
    """What one mode has done so far: the doctor's evidence that a live account works end to end."""

    sources: frozenset[str]  # sources with at least one event
    succeeded: int  # actions that succeeded
    refunds: int  # refunds by the payment classifier; for other sources, events whose type says refund or cancel


async def mode_work(engine: AsyncEngine, mode: str, configs: Mapping[str, SourceConfig]) -> ModeWork:
    async with engine.connect() as conn:
        sources = set(
            (await conn.execute(sa.select(events.c.source).where(events.c.mode == mode).distinct())).scalars()
        )
        succeeded = await conn.scalar(
            sa.select(sa.func.count()).where(actions.c.mode == mode, actions.c.status == "succeeded")
        )
        # A payment source's refund is what its classifier says (a Shopify `orders/updated` fully refunded, a
        # WooCommerce `status: refunded`), which no type name tells; other sources' cancellations go by the name.
        paying = {k: v for k, v in configs.items() if recognizes(v)}
        lowered = sa.func.lower(sa.func.coalesce(events.c.type, ""))
        named = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(events)
            .where(
                events.c.mode == mode,
                events.c.source.not_in(list(paying)),
                sa.or_(lowered.contains("refund"), lowered.contains("cancel")),
            )
        )
        refunds = int(named or 0)
        query = sa.select(events.c.source, events.c.type, events.c.payload).where(
            events.c.mode == mode, events.c.source.in_(list(paying))
        )
        async for row in await conn.stream(query):
            paid = payment_in(paying[row.source], row.type, row.payload or {})
            refunds += paid is not None and paid.kind == "refund"
    return ModeWork(frozenset(sources), int(succeeded or 0), refunds)
