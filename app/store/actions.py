"""The action state machine's transitions, each one a conditional row update.

pending ──claim──► running ──► succeeded | failed | dead
   ▲                  │
   └── transient ─────┘ (attempts < max: back to pending with next_attempt_at)
A running row whose lease ran out (its worker died) can be claimed again.
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


@dataclass(frozen=True)
class ClaimedAction:
    id: str
    event_id: str
    rule_id: str
    kind: str
    params: dict[str, Any]
    contact: dict[str, Any] | None
    attempt: int


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    due = sa.or_(actions.c.next_attempt_at.is_(None), actions.c.next_attempt_at <= now)
    return sa.or_(
        sa.and_(actions.c.status == "pending", due),
        sa.and_(actions.c.status == "running", actions.c.lease_until < now),
    )


async def claim(engine: AsyncEngine, action_id: str, *, now: datetime, lease: timedelta) -> ClaimedAction | None:
    """Take the action for this worker; None when another has it, it is not due, or it is finished."""
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(actions.c.id == action_id, _claimable(now))
            .values(
                status="running",
                attempts=actions.c.attempts + 1,
                lease_until=now + lease,
                updated_at=now,
            )
            .returning(
                actions.c.id,
                actions.c.event_id,
                actions.c.rule_id,
                actions.c.kind,
                actions.c.params,
                actions.c.contact,
                actions.c.attempts,
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
    )


async def finish(
    engine: AsyncEngine,
    action: ClaimedAction,
    *,
    status: str,
    error: str | None,
    next_attempt_at: datetime | None,
    calls: Sequence[dict[str, Any]],
    now: datetime,
) -> bool:
    """Record the attempt's outcome; False when the lease was lost to another worker meanwhile."""
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(
                actions.c.id == action.id,
                actions.c.status == "running",
                actions.c.attempts == action.attempt,
            )
            .values(
                status=status,
                last_error=error,
                next_attempt_at=next_attempt_at,
                lease_until=None,
                updated_at=now,
            )
        )
        if calls:
            await conn.execute(
                api_calls.insert(), [{**c, "action_id": action.id, "attempt": action.attempt} for c in calls]
            )
    return result.rowcount == 1


async def due_actions(engine: AsyncEngine, *, now: datetime, limit: int = 500) -> list[tuple[str, int]]:
    """(id, next attempt number) of actions to hand to a worker: pending and due, or with an expired lease."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.id, actions.c.attempts)
            .where(_claimable(now))
            .order_by(actions.c.next_attempt_at)
            .limit(limit)
        )
        return [(r.id, r.attempts + 1) for r in rows]
