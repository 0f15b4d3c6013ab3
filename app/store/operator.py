"""Transitions an operator makes: approve, reject, retry; and approvals that expire."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import actions

RETRYABLE = ("failed", "dead", "rejected", "skipped")


async def _transition(
    engine: AsyncEngine, where: sa.ColumnElement[bool], values: dict[str, object]
) -> list[tuple[str, int]]:
    async with engine.begin() as conn:
        rows = await conn.execute(
            actions.update().where(where).values(**values).returning(actions.c.id, actions.c.attempts)
        )
        return [(r.id, r.attempts + 1) for r in rows]


async def approve(engine: AsyncEngine, action_id: str, *, by: str, now: datetime) -> list[tuple[str, int]]:
    """awaiting_approval → pending, due now; empty when the action is not awaiting approval."""
    return await _transition(
        engine,
        sa.and_(actions.c.id == action_id, actions.c.status == "awaiting_approval"),
        {"status": "pending", "next_attempt_at": now, "decided_by": by, "decided_at": now, "updated_at": now},
    )


async def reject(engine: AsyncEngine, action_id: str, *, by: str, reason: str | None, now: datetime) -> bool:
    done = await _transition(
        engine,
        sa.and_(actions.c.id == action_id, actions.c.status == "awaiting_approval"),
        {
            "status": "rejected",
            "decided_by": by,
            "decided_at": now,
            "last_error": f"rejected by {by}" + (f": {reason}" if reason else ""),
            "updated_at": now,
        },
    )
    return bool(done)


async def retry(
    engine: AsyncEngine,
    *,
    by: str,
    now: datetime,
    action_id: str | None = None,
    status: str | None = None,
    rule: str | None = None,
) -> list[tuple[str, int]]:
    """Failed, dead, rejected or skipped actions back to pending with a fresh attempt budget."""
    where: list[sa.ColumnElement[bool]] = [actions.c.status.in_(RETRYABLE)]
    if action_id is not None:
        where.append(actions.c.id == action_id)
    if status is not None:
        where.append(actions.c.status == status)
    if rule is not None:
        where.append(actions.c.rule_id == rule)
    return await _transition(
        engine,
        sa.and_(*where),
        {
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": None,
            "note": f"retried by {by}",
            "updated_at": now,
        },
    )


async def expire_approvals(engine: AsyncEngine, *, now: datetime) -> int:
    """Approvals not given by their deadline are rejected, so nothing waits forever."""
    done = await _transition(
        engine,
        sa.and_(actions.c.status == "awaiting_approval", actions.c.approval_deadline < now),
        {
            "status": "rejected",
            "decided_by": "deadline",
            "decided_at": now,
            "last_error": "no approval before the deadline",
            "updated_at": now,
        },
    )
    return len(done)
