"""Retention and privacy: purge old events (keeping their deduplication key) and forget a person."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.actions import TERMINAL
from app.store.contacts import forget_contacts
from app.store.erasures import OPERATOR_SOURCE
from app.store.models import actions, api_calls, contacts, events, payments_handled, rule_outcomes
from app.store.statuses import ActionStatus

_BATCH = 500
# Only work that is over may go. Purging deletes the actions, so an event with a step still pending (a held account,
# a retry far ahead), running, scheduled or awaiting approval stays until it ends; a dead one stays for the operator
# to retry. Listing what may go, not what stays, spares a status added later.
PURGEABLE_STATUSES = tuple(sorted(TERMINAL - {ActionStatus.DEAD}))


async def purge(engine: AsyncEngine, *, before: datetime, now: datetime) -> int:
    """Empty events received before `before`, with their outcomes, actions and calls; spare any event with an
    action not yet final, or dead. The event row stays, slim, with its (source, provider id)."""
    purged = 0
    kept = sa.select(actions.c.id).where(actions.c.event_id == events.c.id, actions.c.status.not_in(PURGEABLE_STATUSES))
    while True:
        async with engine.begin() as conn:
            ids = list(
                await conn.scalars(
                    sa.select(events.c.id)
                    .where(
                        events.c.received_at < before,
                        events.c.purged_at.is_(None),
                        # An event never planned still has its work ahead: a sweep plans it.
                        events.c.planned_at.is_not(None),
                        # The record of an erasure an operator asked for names nobody and is the proof it was done.
                        events.c.source != OPERATOR_SOURCE,
                        ~kept.exists(),
                    )
                    .limit(_BATCH)
                )
            )
            if not ids:
                return purged
            action_ids = sa.select(actions.c.id).where(actions.c.event_id.in_(ids))
            await conn.execute(api_calls.delete().where(api_calls.c.action_id.in_(action_ids)))
            await conn.execute(actions.delete().where(actions.c.event_id.in_(ids)))
            await conn.execute(rule_outcomes.delete().where(rule_outcomes.c.event_id.in_(ids)))
            await conn.execute(
                events.update().where(events.c.id.in_(ids)).values(payload={}, headers={}, purged_at=now)
            )
            purged += len(ids)


def _mentions(value: Any, email: str) -> bool:
    """True when some string value of the payload is the address, whatever its case."""
    if isinstance(value, str):
        return value.strip().lower() == email
    if isinstance(value, dict):
        return any(_mentions(v, email) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, email) for v in value)
    return False


async def events_about(conn: AsyncConnection, email: str) -> list[str]:
    """The ids of the events about a person: a rule rendered their contact, or a payload value is their address."""
    email = email.strip().lower()
    rendered = sa.or_(
        events.c.id.in_(sa.select(rule_outcomes.c.event_id).where(rule_outcomes.c.contact_email == email)),
        events.c.id.in_(sa.select(actions.c.event_id).where(actions.c.contact_email == email)),
    )
    # The payload's text narrows the search (as stored: SQLite keeps JSON with \u escapes, PostgreSQL does not);
    # only an exact value decides, so forgetting a@yopmail.com leaves ada@yopmail.com alone.
    text = sa.func.lower(sa.cast(events.c.payload, sa.Text))
    escaped = json.dumps(email)[1:-1]
    in_text = sa.or_(text.contains(email, autoescape=True), text.contains(escaped, autoescape=True))
    ids = list(await conn.scalars(sa.select(events.c.id).where(rendered)))
    candidates = await conn.execute(
        sa.select(events.c.id, events.c.payload).where(in_text, events.c.id.not_in(ids) if ids else sa.true())
    )
    return ids + [row.id for row in candidates if _mentions(row.payload, email)]


async def forget(engine: AsyncEngine, email: str) -> dict[str, int]:
    """Erase what is stored about a person: payloads, headers, rendered contact data, API bodies. Rows stay, so
    counts stay; nothing left in them names the person."""
    email = email.strip().lower()
    async with engine.begin() as conn:
        # The mirror's entry holds the address, the contact id and its fields: it goes too.
        await forget_contacts(conn, email)
        ids = await events_about(conn, email)
        if not ids:
            return {"events": 0, "actions": 0}
        action_ids = list(await conn.scalars(sa.select(actions.c.id).where(actions.c.event_id.in_(ids))))
        await conn.execute(events.update().where(events.c.id.in_(ids)).values(payload={"forgotten": True}, headers={}))
        await conn.execute(
            rule_outcomes.update()
            .where(rule_outcomes.c.event_id.in_(ids))
            .values(contact_email=None, reason="(forgotten)")
        )
        await conn.execute(
            actions.update()
            .where(actions.c.id.in_(action_ids))
            .values(params={}, contact=None, contact_email=None, last_error=None, note=None)
        )
        # What has not run yet never will: without its contact it could only fail.
        await conn.execute(
            actions.update()
            .where(actions.c.id.in_(action_ids), actions.c.status.in_((ActionStatus.PENDING, ActionStatus.SCHEDULED)))
            .values(status=ActionStatus.CANCELLED, note="cancelled: the person was forgotten")
        )
        await conn.execute(
            api_calls.update()
            .where(api_calls.c.action_id.in_(action_ids))
            .values(path="(forgotten)", request_body=None, response_body=None, error=None)
        )
        # An operator's reason for marking a payment handled is free text, and may well name the buyer.
        await conn.execute(
            payments_handled.update().where(payments_handled.c.event_id.in_(ids)).values(reason="(forgotten)")
        )
    return {"events": len(ids), "actions": len(action_ids)}


async def remains(engine: AsyncEngine, email: str) -> bool:
    """True while something stored still names the person: an event about them, or their mirror entry."""
    email = email.strip().lower()
    async with engine.connect() as conn:
        if await conn.scalar(sa.select(contacts.c.email).where(contacts.c.email == email).limit(1)):
            return True
        return bool(await events_about(conn, email))
