"""A contact's whole story: every event about the person, each rule's decision, each action with its API calls,
the steps still scheduled, and what the mirror knows of them. Shared by the API, the CLI and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.payments.configured import payment_in
from app.rules.schema import SourceConfig
from app.store.models import contacts, events
from app.store.queries import get_event
from app.store.retention import events_about

# A person with more events than this is shown with the newest ones (the count says how many there are).
MAX_EVENTS = 200


async def contact_story(engine: AsyncEngine, sources: Mapping[str, SourceConfig], email: str) -> dict[str, Any]:
    email = email.strip().lower()
    async with engine.connect() as conn:
        ids = await events_about(conn, email)
        newest = (
            list(
                await conn.scalars(
                    sa.select(events.c.id)
                    .where(events.c.id.in_(ids))
                    .order_by(events.c.received_at.desc())
                    .limit(MAX_EVENTS)
                )
            )
            if ids
            else []
        )
        mirror = [
            {"account": row.account, "contact_id": row.contact_id, "facts": row.facts, "learned_at": row.learned_at}
            for row in await conn.execute(sa.select(contacts).where(sa.func.lower(contacts.c.email) == email))
        ]
    story = []
    for event_id in reversed(newest):  # oldest first: a story reads forward
        event = await get_event(engine, event_id)
        if event is None:
            continue
        config = sources.get(event["source"])
        paid = payment_in(config, event["type"], event["payload"] or {}) if config else None
        event["payment"] = (
            {"kind": paid.kind, "amount": paid.amount, "currency": paid.currency, "product": paid.product}
            if paid
            else None
        )
        story.append(event)
    scheduled = [a for e in story for a in e["actions"] if a["status"] == "scheduled"]
    return {"email": email, "events_total": len(ids), "events": story, "scheduled": scheduled, "mirror": mirror}
