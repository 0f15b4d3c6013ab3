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
    # A run with a contact is what an unjudged event may concern; its rows are stamped with their event's arrival.
    arrived = (
        sa.select(actions.c.created_at)
        .where(actions.c.id == action_id, actions.c.contact_email.is_not(None))
        .scalar_subquery()
    )
    async with engine.connect() as conn:
        # Read from the partial index on unplanned events: only those rows, a handful at most.
        earlier = await conn.scalar(
            sa.select(events.c.id)
            .where(events.c.planned_at.is_(None), events.c.received_at < arrived, events.c.received_at > now - bound)
            .limit(1)
        )
        if earlier is None:
            return None
        attempts = await conn.scalar(sa.select(actions.c.attempts).where(actions.c.id == action_id))
    return (attempts or 0) + 1


# The advisory-lock space of contact claims (two-key form, which never meets the migrations' one-key lock).
_CLAIM_LOCKS = 0x5346


async def lock_contact(conn: AsyncConnection, account: str, email: str) -> None:
    """Claims of one contact's runs, one at a time on PostgreSQL, until the transaction ends. Each claim reads the
    other runs' rows and then takes its own: two at once (a purchase planned late, its refund's run) would each see
    the other not yet running and both run, a grant racing its revoke. SQLite has one writer: nothing to do."""
    if conn.dialect.name == "postgresql":
        key = f"{account}\n{email}"
        await conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"), {"space": _CLAIM_LOCKS, "key": key}
        )


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
    """A step of a later event that already ran for the contact."""

    event_id: str
    rule_id: str
    kind: str
    params: dict[str, Any]
    order_key: str

    def overturns(self, action: ClaimedAction) -> bool:
        """Whether, by kind and event time, this may have the last word over `action` (the same thing is checked
        by the caller, which can look names up)."""
        return self.kind == OPPOSITE.get(action.kind) and self.order_key > action.order_key

    def reason(self) -> str:
        return f"overturned by {self.event_id} ({self.rule_id}: {self.kind}) which already ran"


async def later_steps(engine: AsyncEngine, first: ClaimedAction) -> list[LaterStep]:
    """The steps of later events (by event time, the order key) that already succeeded for the run's contact,
    latest first: a run that has any came out of order, and those opposite to one of its steps may overturn it.
    Whoever planned the run (the planner, the sweep, an operator's replay or fix), its event keeps its place."""
    if first.contact_email is None:
        return []
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.event_id, actions.c.rule_id, actions.c.kind, actions.c.params, actions.c.order_key)
            .where(
                actions.c.contact_email == first.contact_email,
                actions.c.account == first.account,
                actions.c.order_key > first.order_key,
                # Its own event's later steps do not count: a replayed or reconciled step comes after them by design.
                actions.c.event_id != first.event_id,
                actions.c.status == ActionStatus.SUCCEEDED,
            )
            .order_by(actions.c.order_key.desc())
        )
        return [LaterStep(r.event_id, r.rule_id, r.kind, dict(r.params), r.order_key) for r in rows]
