"""With Redis: a reconcile draws on the workers' own quota budget, and its fixes are jobs for the workers."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa
from arq import Worker, create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis

from app.accounts.registry import AccountClients
from app.pipeline.dispatch import ArqDispatcher
from app.reconcile.fix import choose, fix
from app.store.db import create_engine
from app.store.models import actions
from tests.factories import rules_file
from tests.flows import hammer
from tests.reconcile.conftest import check, purchase
from workers.settings import WorkerSettings


async def test_a_reconcile_and_the_workers_share_one_quota(make_settings, sqlite_url, clean_redis, sim, client):
    engine = create_engine(sqlite_url)
    emails = [f"buyer{n}@yopmail.com" for n in range(6)]
    for email in emails:
        await purchase(engine, client, email)
    # From now on, a fresh window: the purchases' requests do not count against it.
    sim.account.rate_limit, sim.account.window_seconds = 15, 1.5
    sim.account.window_start, sim.account.window_used = time.monotonic(), 0
    settings = make_settings(database_url=sqlite_url, redis_url=clean_redis)
    redis = Redis.from_url(clean_redis)
    workers = AccountClients(settings, None, redis=redis).client("default")  # what workers/settings.py builds
    reconciling = AccountClients(settings, None, redis=redis).client("default")  # what `reconcile` builds
    assert workers is not None and reconciling is not None
    try:
        assert AccountClients(settings, None, redis=redis).client("shop2") is None
        done, report = await asyncio.gather(hammer(workers, 24, 4), check(engine, reconciling))
    finally:
        await workers.aclose()
        await reconciling.aclose()
        await redis.aclose()
        await engine.dispose()
    assert done == 24 and report.checked == 6 and report.drifts == [] and report.complete
    assert sim.account.throttled == 0  # together they never went over the account's quota: not a single 429


async def test_fixes_are_handed_to_the_workers_through_redis(
    make_settings, sqlite_url, clean_redis, sim, client, hands
):
    engine = create_engine(sqlite_url)
    pool = await create_pool(RedisSettings.from_dsn(clean_redis))
    try:
        await purchase(engine, client, "ada@yopmail.com")
        await hands.untag("ada@yopmail.com", "Masterclass buyer")
        choice, approvals = choose((await check(engine, client)).drifts, rules_file())
        (planned,) = await fix(
            engine, ArqDispatcher(pool), choice.fix, approvals, by="cron", approval_window=timedelta(days=7)
        )
        assert await pool.zcard("arq:queue") == 1
        worker = Worker(
            functions=WorkerSettings.functions,
            on_startup=WorkerSettings.on_startup,
            on_shutdown=WorkerSettings.on_shutdown,
            redis_settings=RedisSettings.from_dsn(clean_redis),
            burst=True,
            max_tries=1,
            keep_result=0,
            ctx={"settings": make_settings(database_url=sqlite_url, redis_url=clean_redis)},
            poll_delay=0.05,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        assert worker.jobs_complete == 1
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(actions).where(actions.c.id == planned["id"]))).one()
        assert (row.status, row.outcome, row.note) == ("succeeded", "tagged", "reconcile by cron")
        assert sim.tag_names("ada@yopmail.com") == ["Masterclass buyer"]
    finally:
        await pool.aclose()
        await engine.dispose()
