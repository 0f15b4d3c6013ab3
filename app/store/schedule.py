"""The contact's waiting steps of a rule: what a `cancel_scheduled` step cancels, and what explain counts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.actions import WAITING, ClaimedAction
from app.store.models import actions
from app.store.statuses import ActionStatus


async def cancel_rule_steps(engine: AsyncEngine, step: ClaimedAction, *, rule: str, now: datetime) -> int:
    """Cancel the contact's pending and scheduled actions of `rule` that earlier events planned.

    Returns how many this event has cancelled, so a second attempt of the step (after a crash between this and its
    record) reports the same number. Never this event's own actions, nor a later event's: a refund cancels what
    came before it, not the next purchase.
    """
    note = f"cancelled by event {step.event_id} (rule {step.rule_id})"
    earlier = sa.and_(
        actions.c.contact_email == step.contact_email,
        actions.c.rule_id == rule,
        actions.c.order_key < step.order_key,
        actions.c.event_id != step.event_id,
    )
    async with engine.begin() as conn:
        await conn.execute(
            actions.update()
            .where(earlier, actions.c.status.in_(WAITING))
            .values(status=ActionStatus.CANCELLED, note=note, lease_until=None, claimed_by=None, updated_at=now)
        )
        cancelled = await conn.scalar(
            sa.select(sa.func.count()).where(
                earlier, actions.c.status == ActionStatus.CANCELLED, actions.c.note == note
            )
        )
    return int(cancelled or 0)


async def waiting_steps(engine: AsyncEngine, *, email: str, rule: str) -> int:
    """How many pending or scheduled actions of `rule` the contact has now (for explain)."""
    async with engine.connect() as conn:
        found = await conn.scalar(
            sa.select(sa.func.count()).where(
                actions.c.contact_email == email, actions.c.rule_id == rule, actions.c.status.in_(WAITING)
            )
        )
    return int(found or 0)
