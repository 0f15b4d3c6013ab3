"""Transitions an operator makes: approve, reject, retry, run a scheduled step now or cancel it; and approvals
that expire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes
from app.store.models import actions
from app.store.modes import runnable
from app.store.statuses import ActionStatus

RETRYABLE = (ActionStatus.FAILED, ActionStatus.DEAD, ActionStatus.REJECTED, ActionStatus.SKIPPED)


async def _transition(
    engine: AsyncEngine, where: sa.ColumnElement[bool], values: dict[str, object]
) -> list[tuple[str, int]]:
    """The rows that changed, as (id, next attempt number) to dispatch; only those now pending."""
    async with engine.begin() as conn:
        rows = await conn.execute(
            actions.update().where(where).values(**values).returning(actions.c.id, actions.c.attempts, actions.c.status)
        )
        return [(r.id, r.attempts + 1) for r in rows if r.status == ActionStatus.PENDING]


async def approve(engine: AsyncEngine, action_id: str, *, by: str, now: datetime) -> list[tuple[str, int]] | None:
    """awaiting_approval → pending, due now, or `scheduled` when it is a delayed step whose time has not come (its
    due time waits in next_attempt_at). None when the action is not awaiting approval."""
    later: Any = sa.and_(actions.c.next_attempt_at.is_not(None), actions.c.next_attempt_at > now)
    async with engine.begin() as conn:
        rows = list(
            await conn.execute(
                actions.update()
                .where(actions.c.id == action_id, actions.c.status == ActionStatus.AWAITING_APPROVAL)
                .values(
                    status=sa.case((later, ActionStatus.SCHEDULED.value), else_=ActionStatus.PENDING.value),
                    next_attempt_at=sa.case((later, actions.c.next_attempt_at), else_=now),
                    decided_by=by,
                    decided_at=now,
                    updated_at=now,
                )
                .returning(actions.c.id, actions.c.attempts, actions.c.status)
            )
        )
    if not rows:
        return None
    return [(r.id, r.attempts + 1) for r in rows if r.status == ActionStatus.PENDING]


def _earlier_scheduled(this: Any) -> sa.Select[Any]:
    return (
        sa.select(actions.c.id, actions.c.kind)
        .where(
            actions.c.event_id == this.event_id,
            actions.c.rule_id == this.rule_id,
            actions.c.order_key < this.order_key,
            actions.c.status == ActionStatus.SCHEDULED,
        )
        .order_by(actions.c.order_key)
        .limit(1)
    )


def _this(action_id: str) -> sa.Select[Any]:
    return sa.select(actions.c.event_id, actions.c.rule_id, actions.c.order_key).where(actions.c.id == action_id)


async def run_now(engine: AsyncEngine, action_id: str, *, by: str, now: datetime) -> list[tuple[str, int]]:
    """scheduled → pending, due now; empty when it is not scheduled, or when an earlier step of its rule still is
    (it would only wait behind that one)."""
    async with engine.begin() as conn:
        this = (await conn.execute(_this(action_id).where(actions.c.status == ActionStatus.SCHEDULED))).first()
        if this is None or (await conn.execute(_earlier_scheduled(this))).first() is not None:
            return []
        changed = await conn.execute(
            actions.update()
            .where(actions.c.id == action_id, actions.c.status == ActionStatus.SCHEDULED)
            .values(status=ActionStatus.PENDING, next_attempt_at=now, note=f"run now by {by}", updated_at=now)
            .returning(actions.c.id, actions.c.attempts)
        )
        return [(r.id, r.attempts + 1) for r in changed]


async def earlier_scheduled(engine: AsyncEngine, action_id: str) -> tuple[str, str] | None:
    """(id, kind) of the first scheduled step of the same event and rule before this one, if any."""
    async with engine.connect() as conn:
        this = (await conn.execute(_this(action_id))).first()
        found = (await conn.execute(_earlier_scheduled(this))).first() if this is not None else None
    return (found.id, found.kind) if found is not None else None


async def cancel(engine: AsyncEngine, action_id: str, *, by: str, reason: str | None, now: datetime) -> bool:
    """scheduled → cancelled, with who (and why) recorded; False when it is not scheduled."""
    done = await _changed(
        engine,
        sa.and_(actions.c.id == action_id, actions.c.status == ActionStatus.SCHEDULED),
        {
            "status": ActionStatus.CANCELLED,
            "decided_by": by,
            "decided_at": now,
            "note": f"cancelled by {by}" + (f": {reason}" if reason else ""),
            "updated_at": now,
        },
    )
    return done > 0


async def _changed(engine: AsyncEngine, where: sa.ColumnElement[bool], values: dict[str, object]) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(actions.update().where(where).values(**values))
    return result.rowcount


async def reject(engine: AsyncEngine, action_id: str, *, by: str, reason: str | None, now: datetime) -> bool:
    done = await _changed(
        engine,
        sa.and_(actions.c.id == action_id, actions.c.status == ActionStatus.AWAITING_APPROVAL),
        {
            "status": ActionStatus.REJECTED,
            "decided_by": by,
            "decided_at": now,
            "last_error": f"rejected by {by}" + (f": {reason}" if reason else ""),
            "updated_at": now,
        },
    )
    return done > 0


async def retry(
    engine: AsyncEngine,
    *,
    by: str,
    now: datetime,
    action_id: str | None = None,
    status: str | None = None,
    rule: str | None = None,
    modes: Modes | None = None,
) -> list[tuple[str, int]]:
    """Failed, dead, rejected or skipped actions back to pending with a fresh attempt budget; with `modes`, only
    those planned under their account's current mode."""
    where: list[sa.ColumnElement[bool]] = [actions.c.status.in_(RETRYABLE), runnable(modes)]
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
            "status": ActionStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": None,
            "note": f"retried by {by}",
            "updated_at": now,
        },
    )


async def expire_approvals(engine: AsyncEngine, *, now: datetime) -> int:
    """Approvals not given by their deadline are rejected, so nothing waits forever."""
    return await _changed(
        engine,
        sa.and_(actions.c.status == ActionStatus.AWAITING_APPROVAL, actions.c.approval_deadline < now),
        {
            "status": ActionStatus.REJECTED,
            "decided_by": "deadline",
            "decided_at": now,
            "last_error": "no approval before the deadline",
            "updated_at": now,
        },
    )
