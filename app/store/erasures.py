"""The record of an erasure in Systeme.io an operator asked for (`forget EMAIL --in-systeme`).

It is stored as webhook work is: an event (of the source `_operator`, which no rules file can name, so nothing
judges or replays it as a webhook), a rule outcome, and one `delete_contact` action with its API calls, so the
dashboard, `actions` and the contact's story show it like any other step. Once the person is forgotten, what is
left names nobody: the event says who asked and on which account, the action keeps its status, outcome (the
deleted contact's former Systeme.io id) and each call's method and answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.events import order_key
from app.store.models import actions, events, new_id, rule_outcomes
from app.store.statuses import ActionStatus

# Not a valid source name (those start with a letter or digit): an operator's work, never a webhook's.
OPERATOR_SOURCE = "_operator"
ERASURE_TYPE = "forget"
ERASURE_RULE = "forget --in-systeme"
ERASED_NOTE = "cancelled: erased on request"


@dataclass(frozen=True)
class PlannedErasure:
    event_id: str
    action_id: str


async def plan_erasure(
    engine: AsyncEngine,
    *,
    email: str,
    account: str,
    by: str,
    now: datetime,
    mode: str | None,
    event_mode: str | None,
) -> PlannedErasure | None:
    """One pending `delete_contact` of `email` on `account`, approved by `by` as it is asked; None (nothing planned)
    while one of the person's actions runs.

    The person's steps still waiting are cancelled first, in the same transaction: none can be claimed afterwards to
    create the contact again behind the erasure, or write what forgetting them then clears."""
    event_id, action_id = new_id("evt"), new_id("act")
    async with engine.begin() as conn:
        theirs = actions.c.contact_email == email
        await conn.execute(
            actions.update()
            .where(theirs, actions.c.status.in_((ActionStatus.PENDING, ActionStatus.SCHEDULED)))
            .values(status=ActionStatus.CANCELLED, note=ERASED_NOTE, next_attempt_at=None, updated_at=now)
        )
        # A run already under way may still create the contact or write its answers: the erasure waits for it.
        if await conn.scalar(sa.select(actions.c.id).where(theirs, actions.c.status == ActionStatus.RUNNING).limit(1)):
            return None
        await conn.execute(
            events.insert().values(
                id=event_id,
                source=OPERATOR_SOURCE,
                type=ERASURE_TYPE,
                provider_id=event_id,
                received_at=now,
                occurred_at=now,
                headers={},
                payload=_payload(by, account),
                rules_version="operator",
                planned_at=now,
                mode=event_mode,
            )
        )
        await conn.execute(
            rule_outcomes.insert().values(
                event_id=event_id,
                rule_id=ERASURE_RULE,
                decision="matched",
                reason=f"asked by {by}",
                contact_email=email,
            )
        )
        await conn.execute(
            actions.insert().values(
                id=action_id,
                event_id=event_id,
                rule_id=ERASURE_RULE,
                seq=0,
                kind="delete_contact",
                params={},
                contact={"email": email, "update": "never", "fields": {}},
                contact_email=email,
                # Asked by the operator in person: that is the approval.
                approval="auto",
                decided_by=by,
                decided_at=now,
                status=ActionStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                order_key=order_key(now, event_id, 0, 0),
                note=f"asked by {by} (forget --in-systeme)",
                account=account,
                mode=mode,
            )
        )
    return PlannedErasure(event_id, action_id)


def _payload(by: str, account: str) -> dict[str, Any]:
    return {"erasure": ERASURE_RULE, "requested_by": by, "account": account}


async def erasure_state(engine: AsyncEngine, action_id: str) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(actions.c.status, actions.c.outcome, actions.c.last_error, actions.c.next_attempt_at).where(
                    actions.c.id == action_id
                )
            )
        ).one()


async def give_up(engine: AsyncEngine, action_id: str, *, why: str, now: datetime) -> bool:
    """A pending erasure (a retry ahead, a held account) is cancelled: the operator runs the command again."""
    async with engine.begin() as conn:
        done = await conn.execute(
            actions.update()
            .where(actions.c.id == action_id, actions.c.status == ActionStatus.PENDING)
            .values(status=ActionStatus.CANCELLED, note=f"cancelled: {why}", next_attempt_at=None, updated_at=now)
        )
    return done.rowcount > 0


async def keep_the_record(engine: AsyncEngine, erasure: PlannedErasure, *, by: str, account: str) -> None:
    """After the person is forgotten: say again what the rows were, in words that name nobody."""
    async with engine.begin() as conn:
        await conn.execute(events.update().where(events.c.id == erasure.event_id).values(payload=_payload(by, account)))
        await conn.execute(
            rule_outcomes.update()
            .where(rule_outcomes.c.event_id == erasure.event_id)
            .values(reason=f"asked by {by}; the person was then forgotten here")
        )
        await conn.execute(
            actions.update()
            .where(actions.c.id == erasure.action_id)
            .values(note=f"asked by {by} (forget --in-systeme); the person was then forgotten here")
        )
