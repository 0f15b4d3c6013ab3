"""The embedded executor lets deliveries be stored first: a run starts once no delivery waits for the store."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name, in_progress_key_prefix

from app.pipeline.dispatch import ArqDispatcher
from app.pipeline.embedded import EmbeddedExecutor
from app.pipeline.service import build_pipeline, close_pipeline
from app.rules.current import RulesInForce
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.db import create_engine
from app.store.events import NewEvent
from app.store.models import actions, utcnow
from app.store.writer import GroupWriter
from tests.conftest import wait_for
from tests.factories import RULES, record_event, stripe_checkout


def delivery(provider_id: str) -> NewEvent:
    return NewEvent("stripe", "ping", provider_id, {"id": provider_id}, {}, None, "v1", utcnow())


async def test_no_run_starts_while_a_delivery_waits_to_be_stored(make_settings, postgres_url):
    engine = create_engine(postgres_url)
    rules = RuleSet(parse_rules(RULES, path="r", env={}))
    payload = stripe_checkout("first@yopmail.com", event_id="evt_first")
    stored = await record_event(
        engine,
        source="stripe",
        event_type="checkout.session.completed",
        provider_id="evt_first",
        payload=payload,
        headers={},
        occurred_at=None,
        outcomes=rules.plan(source="stripe", event_type="checkout.session.completed", payload=payload),
        rules_version=rules.version,
        now=utcnow(),
        approval_window=timedelta(days=7),
    )
    # Another transaction holds the key of the next delivery: its insert waits until that one ends.
    holder = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    blocker = holder.transaction()
    await blocker.start()
    await holder.execute(
        "INSERT INTO events (id, source, provider_id, received_at, headers, payload, rules_version) "
        "VALUES ('evt_held', 'stripe', 'held', now(), '{}', '{}', 'v1')"
    )
    # Ingest goes first for up to a minute here (a second in production): long enough to see the run wait.
    writer = GroupWriter(engine, first_seconds=60)
    executor = EmbeddedExecutor(concurrency=1, writer=writer)
    settings = make_settings(database_url=postgres_url)
    in_force = RulesInForce(settings.rules_file)
    assert in_force.load()
    pipeline = build_pipeline(settings, engine, in_force, executor, None)

    async def statuses() -> set[str]:
        async with engine.connect() as conn:
            return set(await conn.scalars(sa.select(actions.c.status).where(actions.c.event_id == stored.event_id)))

    try:
        write = asyncio.create_task(writer.write(delivery("held")))
        executor.start(pipeline)  # its sweep hands the pending run to the worker at once
        await asyncio.sleep(1.0)
        assert not write.done()
        assert await statuses() == {"pending"}
        await blocker.rollback()
        assert not (await write).duplicate
        await wait_for(lambda: none_pending(statuses))
    finally:
        await executor.stop()
        await holder.close()
        await close_pipeline(pipeline)


async def none_pending(statuses) -> bool:
    return "pending" not in await statuses()


async def test_idle_returns_after_its_timeout_while_a_write_waits(sqlite_url):
    engine = create_engine(sqlite_url)
    writer = GroupWriter(engine)
    # Another connection holds SQLite's write lock: the writer's transaction waits for it.
    holder = create_engine(sqlite_url)
    try:
        async with holder.begin():
            write = asyncio.create_task(writer.write(delivery("a")))
            await asyncio.sleep(0)
            await writer.idle(0.2)
            assert not write.done()
        await writer.idle(60)
        assert write.done() and not write.result().duplicate
        await writer.idle(60)  # idle again: returns at once
    finally:
        await holder.dispose()
        await engine.dispose()


async def test_quiet_waits_for_a_pause_between_deliveries_and_no_longer_than_its_bound(sqlite_url):
    engine = create_engine(sqlite_url)
    writer = GroupWriter(engine)
    loop = asyncio.get_running_loop()
    try:
        # Nothing ever written: it returns at once, without waiting on anything.
        never_written = writer.quiet(0.05, 60)
        with pytest.raises(StopIteration):
            never_written.send(None)
        # The pause is measured from when the delivery arrived: from before the write began, so a slow write on
        # a loaded machine shortens the wait after it but never the pause.
        arrived = loop.time()
        await writer.write(delivery("a"))
        await writer.quiet(0.05, 60)  # a pause of 50 ms after the last delivery
        assert 0.05 <= loop.time() - arrived < 30

        async def trickle() -> None:  # a delivery every 10 ms: never a 50 ms pause
            for n in range(100):
                await writer.write(delivery(f"t{n}"))
                await asyncio.sleep(0.01)

        feeding = asyncio.create_task(trickle())
        await asyncio.sleep(0.02)
        await writer.quiet(0.05, 0.3)  # bounded: returns after 0.3 s though deliveries keep coming
        assert not feeding.done()
        await feeding
    finally:
        await engine.dispose()


async def test_a_run_whose_worker_died_before_claiming_it_is_handed_out_again_at_once(clean_redis):
    pool = await create_pool(RedisSettings.from_dsn(clean_redis))
    dispatcher = ArqDispatcher(pool)
    try:
        await dispatcher.dispatch([("act_taken", 1), ("act_queued", 1)])
        # A worker took `act_taken:1` and was killed before it claimed the run: arq leaves the job queued under an
        # in-progress key that no other worker passes for about five minutes.
        await pool.psetex(in_progress_key_prefix + "act_taken:1", 310_000, b"1")
        # The sweep finds both runs due again and hands them out as it always does.
        await dispatcher.dispatch([("act_taken", 1), ("act_queued", 1)])
        await dispatcher.dispatch([("act_taken", 1), ("act_queued", 1)])
        queued = sorted(job.decode() for job in await pool.zrange(default_queue_name, 0, -1))
    finally:
        await pool.aclose()
    # The taken run gets one fresh job (not one per sweep); a job still waiting in the queue is not doubled.
    assert len(queued) == 3, queued
    assert queued[:2] == ["act_queued:1", "act_taken:1"]
    assert queued[2].startswith("act_taken:1~")
