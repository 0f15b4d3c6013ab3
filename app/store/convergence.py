"""Convergence to event order: a contact ends as applying its events in event-time order would leave it, whatever
order they arrive or are planned in.

Two questions a run asks, beside the per-contact ordering of app/store/actions.py:

- Before it claims: is an event received before this one still unjudged? Its contact is unknown until the rules
  judge it, so it may be this contact's earlier purchase. The run waits for it, but only while that event is
  younger than a bound (`RetryPolicy.unjudged_wait`: the sweep's 30 s, a sweep period and a margin), by when the
  sweep has planned it; one the rules cannot judge stops holding anyone back then.
- Before a grant or a revoke: did a later event's opposite step on the same thing (the same tag, course or
  community, as the rules name it) already run for this contact? Then in event order that later step has the last
  word, and this one is skipped with the reason, instead of leaving a refunded buyer granted (or the other way
  round). Skipping needs no request and leaves nothing to undo, which re-running the later event would not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.models import actions, events
from app.store.statuses import ActionStatus

if TYPE_CHECKING:
    from app.store.actions import ClaimedAction

# Each step that grants or takes back access, and the step that undoes it.
OPPOSITE = {
    "tag": "untag",
    "untag": "tag",
    "enroll": "unenroll",
    "unenroll": "enroll",
    "add_to_community": "remove_from_community",
    "remove_from_community": "add_to_community",
}


def reference(kind: str, params: dict[str, Any]) -> str | None:
    """What a step is about, as the rule names it: a tag's name (or id), a course, a community. Names compare as
    tag lookups do, trimmed and case-folded; a name on one side and an id on the other do not match."""
    if kind in ("tag", "untag"):
        value = params.get("id") if params.get("id") is not None else params.get("name")
    elif kind in ("enroll", "unenroll"):
        value = params.get("course")
    elif kind in ("add_to_community", "remove_from_community"):
        value = params.get("community")
    else:
        return None
    text = str(value if value is not None else "").strip().casefold()
    return text or None


async def awaits_judgement(engine: AsyncEngine, action_id: str, *, now: datetime, bound: timedelta) -> int | None:
    """The attempt number to try the run of `action_id` again with, when an event received before its own is not
    judged yet (and was received less than `bound` ago); None when nothing earlier waits to be judged."""
    if bound <= timedelta(0):
        return None
    async with engine.connect() as conn:
        anchor = (
            await conn.execute(
                sa.select(actions.c.created_at, actions.c.attempts, actions.c.contact_email).where(
                    actions.c.id == action_id
                )
            )
        ).first()
        if anchor is None or anchor.contact_email is None or anchor.created_at <= now - bound:
            return None
        # Read from the partial index on unplanned events: only those rows, a handful at most.
        earlier = await conn.scalar(
            sa.select(events.c.id)
            .where(
                events.c.planned_at.is_(None),
                events.c.received_at < anchor.created_at,
                events.c.received_at > now - bound,
            )
            .limit(1)
        )
    return anchor.attempts + 1 if earlier is not None else None


async def later_run_under_way(conn: AsyncConnection, first: Any, now: datetime) -> bool:
    """A later event's run of the same contact holds its rows under a live lease. One run of a contact at a time: an
    earlier event planned late (by the sweep) waits for it instead of racing it (a grant beside its revoke), and
    that run hands over to it when it ends."""
    beside = await conn.scalar(
        sa.select(actions.c.id)
        .where(
            actions.c.contact_email == first.contact_email,
            actions.c.account == first.account,
            actions.c.order_key > first.order_key,
            actions.c.event_id != first.event_id,
            actions.c.status == ActionStatus.RUNNING,
            actions.c.lease_until >= now,
        )
        .limit(1)
    )
    return beside is not None


@dataclass(frozen=True)
class LaterStep:
    """A later event's step that already ran for the contact, opposite to the one about to run."""

    event_id: str
    rule_id: str
    kind: str
    params: dict[str, Any]

    def reason(self) -> str:
        return f"overturned by {self.event_id} ({self.rule_id}: {self.kind}) which already ran"


async def later_opposites(engine: AsyncEngine, action: ClaimedAction) -> list[LaterStep]:
    """The opposite steps of later events (by event time, the order key) that already ran for the contact, latest
    first: what may overturn `action`. Whoever planned it (the planner, the sweep, an operator's replay or fix), an
    event's effect keeps its place in event order."""
    opposite = OPPOSITE.get(action.kind)
    if opposite is None or action.contact_email is None or reference(action.kind, action.params) is None:
        return []
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.event_id, actions.c.rule_id, actions.c.params)
            .where(
                actions.c.contact_email == action.contact_email,
                actions.c.status == ActionStatus.SUCCEEDED,
                actions.c.account == action.account,
                actions.c.kind == opposite,
                actions.c.order_key > action.order_key,
                actions.c.event_id != action.event_id,
            )
            .order_by(actions.c.order_key.desc())
        )
        return [LaterStep(r.event_id, r.rule_id, opposite, dict(r.params)) for r in rows]
