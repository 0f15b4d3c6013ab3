"""The action state machine's transitions, each one a conditional row update.

awaiting_approval ──approve──► pending ──claim──► running ──► succeeded | failed | skipped | dead
        └──reject / deadline──► rejected    ▲                  │
                                            └── transient ─────┘ (attempts < max: pending, next_attempt_at)
A running row whose lease ran out (its worker died) can be claimed again. An action waits while an earlier one
(by event time) of the same contact is pending or running, for at most `ordering_wait`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import actions, api_calls

TERMINAL = frozenset({"succeeded", "failed", "dead", "skipped", "rejected"})
ACTIVE = ("pending", "running")


@dataclass(frozen=True)
class ClaimedAction:
    id: str
    event_id: str
    rule_id: str
    kind: str
    params: dict[str, Any]
    contact: dict[str, Any] | None
    attempt: int
    contact_email: str | None
    order_key: str


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    due = sa.or_(actions.c.next_attempt_at.is_(None), actions.c.next_attempt_at <= now)
    return sa.or_(
        sa.and_(actions.c.status == "pending", due),
        sa.and_(actions.c.status == "running", actions.c.lease_until < now),
    )


def _in_turn(now: datetime, ordering_wait: timedelta) -> sa.ColumnElement[bool]:
    """No earlier action of the same contact is still pending or running (or this one waited long enough)."""
    earlier = actions.alias("earlier")
    blocked = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.contact_email == actions.c.contact_email,
            earlier.c.order_key < actions.c.order_key,
            earlier.c.status.in_(ACTIVE),
        )
        .exists()
    )
    return sa.or_(actions.c.contact_email.is_(None), ~blocked, actions.c.created_at < now - ordering_wait)


async def claim(
    engine: AsyncEngine,
    action_id: str,
    *,
    now: datetime,
    lease: timedelta,
    ordering_wait: timedelta = timedelta(minutes=10),
) -> ClaimedAction | None:
    """Take the action for this worker; None when another has it, it is not due or not its turn, or it is done."""
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(actions.c.id == action_id, _claimable(now), _in_turn(now, ordering_wait))
            .values(status="running", attempts=actions.c.attempts + 1, lease_until=now + lease, updated_at=now)
            .returning(
                actions.c.id,
                actions.c.event_id,
                actions.c.rule_id,
                actions.c.kind,
                actions.c.params,
                actions.c.contact,
                actions.c.attempts,
                actions.c.contact_email,
                actions.c.order_key,
            )
        )
        row = result.first()
    if row is None:
        return None
    return ClaimedAction(
        id=row.id,
        event_id=row.event_id,
        rule_id=row.rule_id,
        kind=row.kind,
        params=dict(row.params),
        contact=dict(row.contact) if row.contact else None,
        attempt=row.attempts,
        contact_email=row.contact_email,
        order_key=row.order_key,
    )


async def ran_out_of_order(engine: AsyncEngine, action: ClaimedAction) -> bool:
    """True when a later action (by event time) of the same contact already succeeded."""
    if action.contact_email is None:
        return False
    async with engine.connect() as conn:
        later = await conn.scalar(
            sa.select(actions.c.id)
            .where(
                actions.c.contact_email == action.contact_email,
                actions.c.order_key > action.order_key,
                actions.c.status == "succeeded",
            )
            .limit(1)
        )
    return later is not None


async def finish(
    engine: AsyncEngine,
    action: ClaimedAction,
    *,
    status: str,
    error: str | None,
    next_attempt_at: datetime | None,
    calls: Sequence[dict[str, Any]],
    now: datetime,
    note: str | None = None,
) -> bool:
    """Record the attempt's outcome; False when the lease was lost to another worker meanwhile."""
    values: dict[str, Any] = {
        "status": status,
        "last_error": error,
        "next_attempt_at": next_attempt_at,
        "lease_until": None,
        "updated_at": now,
    }
    if note is not None:
        values["note"] = note
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(actions.c.id == action.id, actions.c.status == "running", actions.c.attempts == action.attempt)
            .values(**values)
        )
        if calls:
            await conn.execute(
                api_calls.insert(), [{**c, "action_id": action.id, "attempt": action.attempt} for c in calls]
            )
    return result.rowcount == 1


async def next_for_contact(engine: AsyncEngine, email: str | None, *, now: datetime) -> list[tuple[str, int]]:
    """The contact's next pending action that is due, to hand over as soon as the one before it is done."""
    if email is None:
        return []
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(actions.c.id, actions.c.attempts)
                .where(actions.c.contact_email == email, actions.c.status.in_(ACTIVE))
                .order_by(actions.c.order_key)
                .limit(1)
            )
        ).first()
    return [(row.id, row.attempts + 1)] if row is not None else []


async def due_actions(engine: AsyncEngine, *, now: datetime, limit: int = 500) -> list[tuple[str, int]]:
    """(id, next attempt number) of actions to hand to a worker: pending and due, or with an expired lease."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.id, actions.c.attempts)
            .where(_claimable(now))
            .order_by(actions.c.order_key)
            .limit(limit)
        )
        return [(r.id, r.attempts + 1) for r in rows]
