"""Planning after the answer: an event is durable before its 202, planned right after, and planned by a sweep
when its process stopped in between; never planned twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta

import sqlalchemy as sa

from app.logs import QuietDeliveries
from app.pipeline.planner import LEFTOVER_SECONDS, plan_leftovers
from app.rules.engine import RuleOutcome
from app.store.db import create_engine
from app.store.events import replan_event
from app.store.models import actions, events, rule_outcomes, utcnow
from app.store.plans import Unplanned, record_plans
from app.store.retention import purge
from tests.conftest import operator, post_stripe, running, wait_for
from tests.factories import stripe_checkout
from tests.flows import WINDOW, rules_of, store_unplanned
from tests.servers import in_process_worker


async def counts(engine, event_id: str) -> tuple[int, int, bool]:
    async with engine.connect() as conn:
        outcomes = await conn.scalar(sa.select(sa.func.count()).where(rule_outcomes.c.event_id == event_id))
        planned = await conn.scalar(sa.select(sa.func.count()).where(actions.c.event_id == event_id))
        planned_at = await conn.scalar(sa.select(events.c.planned_at).where(events.c.id == event_id))
    return outcomes or 0, planned or 0, planned_at is not None


async def test_an_event_is_planned_right_after_its_answer(make_settings, database_url, sim):
    with running(make_settings(database_url=database_url)) as url:
        event_id = await post_stripe(url, stripe_checkout("soon@yopmail.com"))

        async def done() -> bool:
            async with operator(url) as http:
                event = (await http.get(f"/v1/events/{event_id}")).json()
            return bool(event["actions"]) and all(a["status"] == "succeeded" for a in event["actions"])

        await wait_for(done)
    assert "Masterclass buyer" in sim.tag_names("soon@yopmail.com")


async def test_a_plan_is_stored_once_whoever_plans(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())
    judged: list[str] = []

    def judge(event: Unplanned) -> list[RuleOutcome]:
        judged.append(event.event_id)
        return rules.plan(source=event.source, event_type=event.event_type, payload=event.payload)

    def store(event: Unplanned) -> Awaitable[tuple[int, list[str]]]:
        return record_plans(engine, [event], judge, rules_version="v1", now=utcnow(), approval_window=WINDOW)

    try:
        event = await store_unplanned(engine, "twice@yopmail.com", age=0)
        assert await counts(engine, event.event_id) == (0, 0, False)
        # Two planners at once (the process's own and a sweep elsewhere): one stores the plan, the other nothing,
        # and only the one that claimed the event judged it.
        first, second = await asyncio.gather(store(event), store(event))
        assert sorted([first[0], second[0]]) == [0, 1] and sorted([len(first[1]), len(second[1])]) == [0, 1]
        assert judged == [event.event_id]
        assert await counts(engine, event.event_id) == (1, 3, True)
        # A replay of a planned event adds its own plan beside the first, as before.
        await replan_event(
            engine, event.event_id, lambda *_: judge(event), now=utcnow(), approval_window=WINDOW, note="r"
        )
        assert await counts(engine, event.event_id) == (2, 6, True)
    finally:
        await engine.dispose()


async def test_a_replay_before_the_plan_leaves_nothing_for_the_planner(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())
    try:
        event = await store_unplanned(engine, "early@yopmail.com", age=0)
        outcomes = rules.plan(source=event.source, event_type=event.event_type, payload=event.payload)
        await replan_event(engine, event.event_id, lambda *_: outcomes, now=utcnow(), approval_window=WINDOW, note="r")
        planned = await record_plans(
            engine, [event], lambda _: outcomes, rules_version="v1", now=utcnow(), approval_window=WINDOW
        )
        assert planned == (0, [])
        assert await counts(engine, event.event_id) == (1, 3, True)
    finally:
        await engine.dispose()


async def test_an_event_the_rules_cannot_judge_stays_unplanned_for_the_sweep(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())
    try:
        bad = await store_unplanned(engine, "bad@yopmail.com", age=0)
        good = await store_unplanned(engine, "good@yopmail.com", age=0)

        def judge(event: Unplanned) -> list[RuleOutcome] | None:
            if event is bad:
                return None
            return rules.plan(source=event.source, event_type=event.event_type, payload=event.payload)

        planned = await record_plans(
            engine, [bad, good], judge, rules_version="v1", now=utcnow(), approval_window=WINDOW
        )
        assert planned[0] == 1
        assert await counts(engine, bad.event_id) == (0, 0, False)
        assert await counts(engine, good.event_id) == (1, 3, True)
    finally:
        await engine.dispose()


async def test_the_service_plans_and_runs_what_a_stopped_process_left_unplanned(make_settings, database_url, sim):
    engine = create_engine(database_url)
    try:
        left = await store_unplanned(engine, "left@yopmail.com", age=LEFTOVER_SECONDS + 5)
        fresh = await store_unplanned(engine, "fresh@yopmail.com", age=0)
    finally:
        await engine.dispose()
    # The service's planner sweeps at start: the old event is planned and its actions run; the fresh one is not
    # a leftover yet (its own process may still be planning it).
    with running(make_settings(database_url=database_url)) as url:
        await wait_for(lambda: "Masterclass buyer" in sim.tag_names("left@yopmail.com"))
        async with operator(url) as http:
            event = (await http.get(f"/v1/events/{left.event_id}")).json()
            still = (await http.get(f"/v1/events/{fresh.event_id}")).json()
    assert [r["rule_id"] for r in event["rules"]] == ["masterclass-purchase"]
    assert still["actions"] == [] and still["planned_at"] is None


async def test_an_arq_worker_plans_what_a_stopped_api_left_unplanned(make_settings, database_url, clean_redis, sim):
    settings = make_settings(database_url=database_url, redis_url=clean_redis)
    engine = create_engine(database_url)
    try:
        left = await store_unplanned(engine, "worker@yopmail.com", age=LEFTOVER_SECONDS + 5)
        worker = in_process_worker(settings, clean_redis)
        task = asyncio.create_task(worker.async_run())
        try:
            await wait_for(lambda: "Masterclass buyer" in sim.tag_names("worker@yopmail.com"), timeout=30)
        finally:
            task.cancel()
            await worker.close()
        assert (await counts(engine, left.event_id))[1:] == (3, True)
    finally:
        await engine.dispose()


async def test_plan_leftovers_skips_events_too_young_and_plans_each_old_one_once(make_settings, database_url):
    engine = create_engine(database_url)
    rules = rules_of(make_settings())
    dispatched: list[tuple[str, int]] = []

    async def dispatch(items, **_) -> None:
        dispatched.extend(items)

    try:
        old = [await store_unplanned(engine, f"old{n}@yopmail.com", age=120) for n in range(3)]
        young = await store_unplanned(engine, "young@yopmail.com", age=0)
        assert await plan_leftovers(engine, rules, dispatch, approval_window=WINDOW, older_than=60.0) == 3
        assert await plan_leftovers(engine, rules, dispatch, approval_window=WINDOW, older_than=60.0) == 0
        assert len(dispatched) == 3  # one run per event: one contact each
        assert [await counts(engine, e.event_id) for e in old] == [(1, 3, True)] * 3
        assert await counts(engine, young.event_id) == (0, 0, False)
    finally:
        await engine.dispose()


async def test_retention_spares_an_event_never_planned(make_settings, database_url):
    engine = create_engine(database_url)
    try:
        event = await store_unplanned(engine, "kept@yopmail.com", age=200 * 86400)
        assert await purge(engine, before=utcnow() - timedelta(days=90), now=utcnow()) == 0
        async with engine.connect() as conn:
            payload = await conn.scalar(sa.select(events.c.payload).where(events.c.id == event.event_id))
        assert payload == event.payload
    finally:
        await engine.dispose()


def _access(method: str, path: str, status: int) -> logging.LogRecord:
    args = ("127.0.0.1:5000", method, path, "1.1", status)
    return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)


def test_a_stored_delivery_has_one_log_line_and_a_refused_one_its_access_line():
    quiet = QuietDeliveries()
    assert not quiet.filter(_access("POST", "/hooks/stripe", 202))
    assert not quiet.filter(_access("POST", "/hooks/stripe", 200))
    assert quiet.filter(_access("POST", "/hooks/stripe", 401))
    assert quiet.filter(_access("POST", "/hooks/signup", 303))
    assert quiet.filter(_access("GET", "/hooks/stripe", 405))
    assert quiet.filter(_access("POST", "/v1/events/x/replay", 202))
