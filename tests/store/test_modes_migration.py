"""Migration 0009: rows from before modes; a dry run's leftovers are told apart and never run under a key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from app.store.db import create_engine
from app.store.migrate import _alembic_config, upgrade_async
from app.store.models import actions, events

DRY = "dry run: no MATON_API_KEY or SYSTEME_API_KEY is set, nothing was sent"


def _to(connection: Any, revision: str) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_migration_marks_a_dry_runs_events_and_waiting_steps(database_url):
    engine = create_engine(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to, "0008")
        async with engine.begin() as conn:
            for event_id in ("evt_dry", "evt_live"):
                await conn.execute(
                    sa.text(
                        "INSERT INTO events (id, source, type, provider_id, received_at, headers, payload, "
                        "rules_version, planned_at) VALUES (:id, 'stripe', 't', :id, :now, '{}', '{}', 'v', :now)"
                    ),
                    {"id": event_id, "now": now},
                )
            rows = [
                ("act_1", "evt_dry", "skipped", DRY),
                ("act_2", "evt_dry", "scheduled", None),
                ("act_3", "evt_live", "succeeded", "tagged"),
                ("act_4", "evt_live", "scheduled", None),
            ]
            for action_id, event_id, status, outcome in rows:
                await conn.execute(
                    sa.text(
                        "INSERT INTO actions (id, event_id, rule_id, seq, kind, params, approval, status, attempts, "
                        "created_at, updated_at, order_key, account, outcome) VALUES (:id, :event, 'r', 0, 'tag', "
                        "'{}', 'none', :status, 0, :now, :now, :id, 'default', :outcome)"
                    ),
                    {"id": action_id, "event": event_id, "status": status, "outcome": outcome, "now": now},
                )
    finally:
        await engine.dispose()
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            event_modes = {r.id: r.mode for r in await conn.execute(sa.select(events.c.id, events.c.mode))}
            action_modes = {r.id: r.mode for r in await conn.execute(sa.select(actions.c.id, actions.c.mode))}
    finally:
        await engine.dispose()
    assert event_modes == {"evt_dry": "dry-run", "evt_live": None}
    assert action_modes == {"act_1": "dry-run", "act_2": "dry-run", "act_3": None, "act_4": None}
