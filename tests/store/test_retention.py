"""Retention empties old events whose work is over, and spares every event whose work is not."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app.store.actions import TERMINAL
from app.store.db import create_engine
from app.store.models import actions, events, utcnow
from app.store.queries import ACTION_STATUSES
from app.store.retention import purge

# Final statuses whose events may go; "dead" is final too, but stays for the operator to retry.
PURGEABLE = TERMINAL - {"dead"}


async def test_purge_spares_every_event_whose_action_is_not_final(database_url):
    now = utcnow()
    old = now - timedelta(days=100)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for status in ACTION_STATUSES:
                await conn.execute(
                    events.insert().values(
                        id=f"evt_{status}",
                        source="stripe",
                        provider_id=status,
                        received_at=old,
                        planned_at=old,  # an event never planned is always spared (tests/test_planning.py)
                        headers={},
                        payload={"email": "old@yopmail.com"},
                        rules_version="v1",
                    )
                )
                # A held account or a retry far ahead leaves a pending row waiting past RETENTION_DAYS.
                await conn.execute(
                    actions.insert().values(
                        id=f"act_{status}",
                        event_id=f"evt_{status}",
                        rule_id="r",
                        seq=0,
                        kind="tag",
                        params={"name": "Buyer"},
                        approval="auto",
                        status=status,
                        attempts=0,
                        next_attempt_at=now + timedelta(days=30),
                        created_at=old,
                        updated_at=old,
                    )
                )
        assert await purge(engine, before=now - timedelta(days=90), now=now) == len(PURGEABLE)
        async with engine.connect() as conn:
            left = set(await conn.scalars(sa.select(actions.c.status)))
            emptied = set(await conn.scalars(sa.select(events.c.provider_id).where(events.c.purged_at.is_not(None))))
    finally:
        await engine.dispose()
    assert emptied == PURGEABLE
    assert left == set(ACTION_STATUSES) - PURGEABLE
    assert {"pending", "running", "scheduled", "awaiting_approval", "dead"} <= left
