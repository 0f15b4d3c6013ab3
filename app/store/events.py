"""Storing events once (ingest stores each alone; the planner, app/store/plans.py, writes its plan later), and
the rows of a plan: its rules' decisions and planned actions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.accounts.modes import Modes
from app.rules.engine import RuleOutcome
from app.rules.schema import DEFAULT_ACCOUNT
from app.store.bulk import insert_many, present_ids
from app.store.models import actions, events, new_id, rule_outcomes
from app.store.statuses import ActionStatus, Priority
from app.store.storable import storable_time


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    duplicate: bool


@dataclass(frozen=True)
class NewEvent:
    """An incoming event, ready to be stored; the planner (app/pipeline/planner.py) judges it after the answer."""

    source: str
    event_type: str | None
    provider_id: str | None
    payload: Mapping[str, Any]
    headers: Mapping[str, str]
    occurred_at: datetime | None
    rules_version: str
    received_at: datetime
    # Other keys the same event may have been stored under (a Systeme.io message id, from before bodies were
    # the key): a stored event with one of them makes this delivery a duplicate.
    aliases: tuple[str, ...] = ()
    # The mode of each account as it arrived (app/accounts/modes.py): the event's is the default account's.
    modes: Modes = field(default_factory=dict)


def arrival_modes(modes: Modes | None, event_mode: str | None) -> Modes:
    """The modes an event's actions are planned under: the default account's is the one the event arrived under
    (a plan made later, after a restart with another key, still belongs to the arrival's mode)."""
    found = dict(modes or {})
    if event_mode is not None:
        found[DEFAULT_ACCOUNT] = event_mode
    return found


async def record_events(engine: AsyncEngine, items: Sequence[NewEvent]) -> list[StoredEvent]:
    """Store several events in one transaction (a group commit): a handful of statements whatever their number.

    Each event is inserted unless (source, provider id) is known, in the database or earlier in the same batch.
    The callers answer only after this returns.
    """
    # An absurd time is dropped here, where it would become a column and an order key: arrival orders instead.
    items = [replace(item, occurred_at=storable_time(item.occurred_at)) for item in items]
    rows: list[dict[str, Any]] = []
    for item in items:
        event_id = new_id("evt")
        rows.append(
            {
                "id": event_id,
                "source": item.source,
                "type": item.event_type,
                "provider_id": item.provider_id or f"delivery:{event_id}",
                "received_at": item.received_at,
                "occurred_at": item.occurred_at,
                "headers": dict(item.headers),
                "payload": dict(item.payload),
                "rules_version": item.rules_version,
                "planned_at": None,
                "mode": item.modes.get(DEFAULT_ACCOUNT),
            }
        )
    async with engine.begin() as conn:
        aliased = await _aliased(conn, items)
        fresh = [row for index, row in enumerate(rows) if index not in aliased]
        inserted: set[str] = set()
        if fresh:
            count = await insert_many(conn, events, fresh, on_conflict=("source", "provider_id"))
            if count == len(fresh):
                inserted = {r["id"] for r in fresh}
            else:
                # Ids are fresh, so the ones found are the rows this insert stored; the others were already known.
                inserted = await present_ids(conn, events, [r["id"] for r in fresh])
        known: dict[tuple[str, str], str] = {}
        if len(inserted) < len(fresh):
            keys = {(r["source"], r["provider_id"]) for r in fresh if r["id"] not in inserted}
            found = await conn.execute(
                sa.select(events.c.id, events.c.source, events.c.provider_id).where(
                    events.c.provider_id.in_({k[1] for k in keys})
                )
            )
            known = {(f.source, f.provider_id): f.id for f in found if (f.source, f.provider_id) in keys}
        results = []
        for index, row in enumerate(rows):
            if index in aliased:
                results.append(StoredEvent(aliased[index], duplicate=True))
            elif row["id"] not in inserted:
                results.append(StoredEvent(known[(row["source"], row["provider_id"])], duplicate=True))
            else:
                results.append(StoredEvent(row["id"], False))
    return results


async def _aliased(conn: AsyncConnection, items: Sequence[NewEvent]) -> dict[int, str]:
    """Index of each item already stored under one of its aliases -> that event's id."""
    wanted = {alias for item in items for alias in item.aliases}
    if not wanted:
        return {}
    found = await conn.execute(
        sa.select(events.c.id, events.c.source, events.c.provider_id).where(events.c.provider_id.in_(wanted))
    )
    stored = {(f.source, f.provider_id): f.id for f in found}
    return {
        index: stored[(item.source, alias)]
        for index, item in enumerate(items)
        for alias in item.aliases
        if (item.source, alias) in stored
    }


def outcome_rows(
    event_id: str, outcomes: Sequence[RuleOutcome], *, replayed_at: datetime | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "event_id": event_id,
            "rule_id": o.rule_id,
            "decision": o.decision,
            "reason": o.reason,
            "contact_email": o.contact_email,
            "replayed_at": replayed_at,
        }
        for o in outcomes
    ]


async def _insert_plan(
    conn: AsyncConnection,
    event_id: str,
    outcomes: Sequence[RuleOutcome],
    *,
    now: datetime,
    occurred_at: datetime,
    approval_deadline: datetime,
    note: str | None = None,
    replayed_at: datetime | None = None,
    modes: Modes | None = None,
) -> list[dict[str, Any]]:
    if outcomes:
        await conn.execute(rule_outcomes.insert(), outcome_rows(event_id, outcomes, replayed_at=replayed_at))
    rows = action_rows(
        event_id,
        outcomes,
        now=now,
        occurred_at=occurred_at,
        approval_deadline=approval_deadline,
        note=note,
        modes=modes,
    )
    if rows:
        await conn.execute(actions.insert(), rows)
    return rows


async def replan_event(
    engine: AsyncEngine,
    event_id: str,
    plan: Callable[[str, str | None, dict[str, Any]], Sequence[RuleOutcome]],
    *,
    now: datetime,
    approval_window: timedelta,
    note: str,
    modes: Modes | None = None,
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]] | None:
    """Plan a stored event again (a replay): new outcomes and actions beside the old ones; None if unknown. With
    `modes`, the event now belongs to the default account's current mode, and so do its new actions (the old ones
    keep theirs: a dry run's stay out of a live account)."""
    async with engine.begin() as conn:
        event = (
            await conn.execute(
                sa.select(
                    events.c.source, events.c.type, events.c.payload, events.c.occurred_at, events.c.received_at
                ).where(events.c.id == event_id)
            )
        ).first()
        if event is None:
            return None
        # An event replayed before its first plan (within a second of arriving) is planned by the replay alone.
        await conn.execute(
            events.update().where(events.c.id == event_id, events.c.planned_at.is_(None)).values(planned_at=now)
        )
        if modes is not None:
            await conn.execute(events.update().where(events.c.id == event_id).values(mode=modes.get(DEFAULT_ACCOUNT)))
        rows = await _insert_plan(
            conn,
            event_id,
            plan(event.source, event.type, dict(event.payload)),
            now=now,
            occurred_at=event.occurred_at or event.received_at,
            approval_deadline=now + approval_window,
            note=note,
            # Marked, so counts and the event page tell a replay's judgement from the first one.
            replayed_at=now,
            modes=modes,
        )
    return tuple((r["id"], r["status"]) for r in rows), runs_of(rows)


def order_key(occurred_at: datetime, event_id: str, rule_index: int, seq: int) -> str:
    """Sorts as the actions of one contact must run: by the provider's event time, then within the event."""
    when = occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{when}|{event_id}|{rule_index:05d}|{seq:03d}"


def runs_of(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The first pending action of each run (one event, one contact, one account), in execution order."""
    firsts: dict[tuple[str | None, str], tuple[str, str]] = {}
    for row in rows:
        if row["status"] == ActionStatus.PENDING:
            key = (row["order_key"], row["id"])
            run = (row["contact_email"], row.get("account", "default"))
            current = firsts.get(run)
            if current is None or key < current:
                firsts[run] = key
    return tuple(action_id for _, action_id in sorted(firsts.values()))


def _status(approval: str, due: datetime | None, now: datetime) -> str:
    # Whether a run is dry is decided by the executor when it runs, never here. A required approval is asked at
    # once, even for a delayed step: approving it before its time makes it `scheduled` (see store.operator.approve).
    if approval == "required":
        return ActionStatus.AWAITING_APPROVAL
    return ActionStatus.SCHEDULED if due is not None and due > now else ActionStatus.PENDING


def action_rows(
    event_id: str,
    outcomes: Sequence[RuleOutcome],
    *,
    now: datetime,
    occurred_at: datetime,
    approval_deadline: datetime,
    note: str | None = None,
    modes: Modes | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for rule_index, outcome in enumerate(outcomes):
        for planned in outcome.actions:
            # A delayed step is a row like any other, due in `next_attempt_at`: the sweep runs it then. Counted from
            # the event's time, but never from later than its arrival (a provider's clock ahead of ours).
            due = min(occurred_at, now) + timedelta(seconds=planned.after) if planned.after else None
            status = _status(planned.approval, due, now)
            rows.append(
                {
                    "id": new_id("act"),
                    "event_id": event_id,
                    "rule_id": planned.rule_id,
                    "seq": planned.seq,
                    "kind": planned.kind,
                    "params": planned.params,
                    "contact": planned.contact,
                    "contact_email": planned.contact["email"] if planned.contact else None,
                    "approval": planned.approval,
                    "account": planned.account,
                    "priority": Priority(planned.priority).rank,
                    "status": status,
                    "attempts": 0,
                    "next_attempt_at": now if status == ActionStatus.PENDING else due,
                    "last_error": None,
                    "created_at": now,
                    "updated_at": now,
                    "order_key": order_key(occurred_at, event_id, rule_index, planned.seq),
                    "approval_deadline": approval_deadline if status == ActionStatus.AWAITING_APPROVAL else None,
                    "note": note,
                    "mode": (modes or {}).get(planned.account),
                }
            )
    return rows
