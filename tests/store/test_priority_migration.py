"""Migration 0013: actions planned before priorities get the default their rule has now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from app.store.db import create_engine
from app.store.migrate import _alembic_config, upgrade_async
from app.store.models import actions


def _to(connection: Any, revision: str) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_rows_of_a_rule_that_grants_access_become_high_the_others_normal(database_url):
    engine = create_engine(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to, "0012")
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO events (id, source, type, provider_id, received_at, headers, payload, "
                    "rules_version, planned_at) VALUES ('evt_1', 'stripe', 't', 'evt_1', :now, '{}', '{}', 'v', :now)"
                ),
                {"now": now},
            )
            # Rule "buy" tags then enrolls (its tag is high too: one run grants access); rule "lead" only tags.
            for action_id, rule, kind in (
                ("act_1", "buy", "tag"),
                ("act_2", "buy", "enroll"),
                ("act_3", "lead", "tag"),
            ):
                await conn.execute(
                    sa.text(
                        "INSERT INTO actions (id, event_id, rule_id, seq, kind, params, approval, status, attempts, "
                        "created_at, updated_at, order_key, account) VALUES (:id, 'evt_1', :rule, 0, :kind, "
                        "'{}', 'auto', 'pending', 0, :now, :now, :id, 'default')"
                    ),
                    {"id": action_id, "rule": rule, "kind": kind, "now": now},
                )
    finally:
        await engine.dispose()
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            ranks = {r.id: r.priority for r in await conn.execute(sa.select(actions.c.id, actions.c.priority))}
    finally:
        await engine.dispose()
    assert ranks == {"act_1": 0, "act_2": 0, "act_3": 1}
