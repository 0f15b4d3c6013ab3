"""Loops broken: past RULE_FIRES_PER_CONTACT fires of a rule for one contact in an hour, its actions wait for
approval with a note saying why, and the planner is told once per batch (the alert)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from app.config import Settings
from app.pipeline.planner import FireLimit, plan_events
from app.store.db import create_engine
from app.store.models import actions, utcnow
from app.store.plans import record_plans
from tests.flows import WINDOW, rules_of, store_unplanned


async def statuses(engine, event_id: str) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.status, actions.c.note).where(actions.c.event_id == event_id).order_by(actions.c.seq)
        )
        return [(r.status, r.note) for r in rows]


async def test_a_rule_past_its_fires_per_contact_waits_for_approval(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())

    def judge(event):
        return rules.plan(source=event.source, event_type=event.event_type, payload=event.payload)

    try:
        first = [await store_unplanned(engine, "loop@gmail.com", age=60) for _ in range(2)]
        other = await store_unplanned(engine, "other@gmail.com", age=0)
        held: list[str] = []
        planned, runs = await record_plans(
            engine, [*first, other], judge, rules_version="v1", now=utcnow(), approval_window=WINDOW,
            fires_per_contact=2, held=held,
        )  # fmt: skip
        assert (planned, len(runs), held) == (3, 3, [])
        # Counted from the stored outcomes: a later batch sees the two fires of the hour before.
        later = [await store_unplanned(engine, "loop@gmail.com", age=0) for _ in range(2)]
        planned, runs = await record_plans(
            engine, [*later, await store_unplanned(engine, "other@gmail.com", age=0)], judge, rules_version="v1",
            now=utcnow(), approval_window=WINDOW, fires_per_contact=2, held=held,
        )  # fmt: skip
        assert (planned, len(runs)) == (3, 1)  # only other@'s second fire runs
        assert held == ["masterclass-purchase for loop@gmail.com (4 fires)"]
        for event in later:
            (status, note), *rest = await statuses(engine, event.event_id)
            assert status == "awaiting_approval" and {s for s, _ in rest} == {"awaiting_approval"}
            assert "RULE_FIRES_PER_CONTACT=2" in (note or "") and "loop@gmail.com" in (note or "")
        assert {s for s, _ in await statuses(engine, first[1].event_id)} == {"pending"}
    finally:
        await engine.dispose()


async def test_fires_older_than_an_hour_do_not_count(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())
    try:
        old = await store_unplanned(engine, "loop@gmail.com", age=3700)
        new = await store_unplanned(engine, "loop@gmail.com", age=0)
        for event in (old, new):
            await record_plans(
                engine, [event], lambda e: rules.plan(source=e.source, event_type=e.event_type, payload=e.payload),
                rules_version="v1", now=utcnow(), approval_window=WINDOW, fires_per_contact=1,
            )  # fmt: skip
        assert {s for s, _ in await statuses(engine, new.event_id)} == {"pending"}
    finally:
        await engine.dispose()


async def test_the_planner_alerts_once_per_batch_held(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())
    told: list[Sequence[str]] = []

    async def on_held(lines: Sequence[str]) -> None:
        told.append(lines)

    async def dispatch(items, **_) -> None:
        pass

    try:
        batch = [await store_unplanned(engine, "loop@gmail.com", age=0) for _ in range(4)]
        limit = FireLimit(per_contact=1, on_held=on_held)
        assert await plan_events(engine, rules, batch, dispatch, approval_window=WINDOW, fire_limit=limit) == 4
        assert told == [["masterclass-purchase for loop@gmail.com (4 fires)"]]
    finally:
        await engine.dispose()


def test_the_setting_defaults_to_systeme_ios_own_limit_and_refuses_zero():
    assert Settings(_env_file=None).rule_fires_per_contact == 20
    with pytest.raises(ValueError, match="RULE_FIRES_PER_CONTACT"):
        Settings(_env_file=None, rule_fires_per_contact=0)
