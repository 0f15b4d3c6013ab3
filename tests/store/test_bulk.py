"""Ingest's pre-compiled inserts store exactly what SQLAlchemy's own insert stores, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.bulk import insert_many
from app.store.db import create_engine
from app.store.events import NewEvent, record_events
from app.store.models import actions, events, rule_outcomes

WHEN = datetime(2026, 11, 26, 9, 30, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
PAYLOAD: dict[str, Any] = {
    "text": "Ada Lovelace — naïve ✓",
    "none": None,
    "nested": {"list": [1, 2.5, -0.0, True, None, {"deep": "x"}], "empty": {}},
    "big": 2**70,
    "float": 1e16,
}


def event_row(n: int) -> dict[str, Any]:
    return {
        "id": f"evt_{n}",
        "source": "stripe",
        "type": None if n % 2 else "checkout.session.completed",
        "provider_id": f"p{n}",
        "received_at": WHEN,
        "occurred_at": None if n % 2 else WHEN.astimezone(UTC),
        "headers": {"content-type": "application/json"},
        "payload": PAYLOAD,
        "rules_version": "v1",
    }


def action_row(n: int, event_id: str) -> dict[str, Any]:
    return {
        "id": f"act_{n}",
        "event_id": event_id,
        "rule_id": "r",
        "seq": n,
        "kind": "tag",
        "params": {"name": "Buyer", "ids": [1, None]},
        "contact": None if n % 2 else {"email": "ada@yopmail.com", "fields": {}},
        "contact_email": None if n % 2 else "ada@yopmail.com",
        "approval": "auto",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": WHEN if n % 2 else None,
        "last_error": None,
        "created_at": WHEN,
        "updated_at": WHEN,
        "order_key": "k",
        "approval_deadline": None,
        "note": None,
    }


async def stored(conn: AsyncConnection, table: sa.Table, key: str) -> dict[Any, tuple[Any, ...]]:
    """Every column as the database holds it (as text), by row, without the row's own ids."""
    columns = [sa.cast(c, sa.Text).label(c.name) for c in table.c if c.name not in ("id", key)]
    rows = (await conn.execute(sa.select(table.c[key], *columns).order_by(table.c[key]))).all()
    return {row[0]: tuple(row[1:]) for row in rows}


async def test_insert_many_stores_what_sqlalchemy_stores(database_url):
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(events.insert(), [event_row(1), event_row(2)])
            await insert_many(conn, events, [event_row(3), event_row(4)])
            await conn.execute(actions.insert(), [action_row(1, "evt_1"), action_row(2, "evt_1")])
            await insert_many(conn, actions, [action_row(3, "evt_3"), action_row(4, "evt_3")])
            outcome = {
                "rule_id": "r",
                "decision": "matched",
                "reason": "ok",
                "contact_email": None,
                "replayed_at": None,
            }
            await conn.execute(rule_outcomes.insert(), [{**outcome, "event_id": "evt_1"}])
            await insert_many(conn, rule_outcomes, [{**outcome, "event_id": "evt_3"}])
        async with engine.connect() as conn:
            by_event = await stored(conn, events, "provider_id")
            by_action = await stored(conn, actions, "seq")
            by_outcome = await stored(conn, rule_outcomes, "event_id")
    finally:
        await engine.dispose()
    assert by_event["p3"] == by_event["p1"] and by_event["p4"] == by_event["p2"]
    assert by_action[3][1:] == by_action[1][1:] and by_action[4][1:] == by_action[2][1:]  # past event_id
    assert by_outcome["evt_3"] == by_outcome["evt_1"]


async def test_a_group_with_known_and_repeated_keys_stores_each_event_once(database_url):
    engine = create_engine(database_url)

    def new(provider_id: str | None) -> NewEvent:
        return NewEvent("stripe", "t", provider_id, {"id": provider_id}, {}, None, "v1", WHEN)

    try:
        (first,) = await record_events(engine, [new("a")])
        group = await record_events(engine, [new("a"), new("b"), new("b"), new(None), new(None)])
        async with engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    finally:
        await engine.dispose()
    assert [r.duplicate for r in group] == [True, False, True, False, False]
    assert group[0].event_id == first.event_id and group[2].event_id == group[1].event_id
    assert count == 4
