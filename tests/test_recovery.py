"""Recovery with the product's defaults: a killed worker, a stopped worker, a 503 blip, a stale quota ticket."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis

from app.simulator.state import Fault
from app.store.db import create_engine
from app.store.models import actions, api_calls
from app.systeme.client import SystemeClient
from app.systeme.quota import RedisQuota, account_key
from tests.conftest import SIM_KEY, post_stripe, running, wait_for
from tests.factories import stripe_checkout
from tests.flows import event_actions, settled, worker_env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "worker", "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def tag_request_arrived(sim) -> bool:
    return any(c["path"].endswith("/tags") and c["method"] == "POST" for c in sim.account.calls)


async def test_a_killed_workers_run_is_taken_over_within_a_minute_once(make_settings, postgres_url, clean_redis, sim):
    settings = make_settings(database_url=postgres_url, redis_url=clean_redis)
    # The tag request hangs for 3 s: long enough to kill the worker while it waits for the answer.
    sim.account.faults.append(Fault(0, 1, "/api/contacts/", "POST", delay=3.0))
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("killed@yopmail.com"))
        env = worker_env(postgres_url, clean_redis, sim.url)  # the default lease: 30 s, renewed every 10 s
        first = start_worker(env)
        try:
            await wait_for(lambda: tag_request_arrived(sim), timeout=30)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = time.monotonic()
        assert {a["status"] for a in await event_actions(url, event_id)} == {"running"}  # the lease still holds
        second = start_worker(env)
        try:
            await wait_for(
                lambda: _all_succeeded(url, event_id),
                timeout=60,  # the bound: a lease (30 s) plus one sweep (10 s), with room to spare
            )
        finally:
            second.terminate()
            second.wait(timeout=30)
        taken_over_after = time.monotonic() - killed_at
        rows = await event_actions(url, event_id)
    assert [a["attempts"] for a in rows] == [2, 2, 2], rows
    assert taken_over_after >= 15  # not before the lease ran out: the dead worker might still have been alive
    assert sim.tag_names("killed@yopmail.com") == ["Masterclass buyer"]
    tag_writes = [c for c in sim.writes() if c["path"].startswith("/api/contacts/") and c["path"].endswith("/tags")]
    assert len(tag_writes) == 1  # the second attempt read the contact first, found the tag, and wrote nothing
    assert len(sim.account.enrollments) == 1 and len(sim.account.memberships) == 1


async def _all_succeeded(url: str, event_id: str) -> bool:
    return {a["status"] for a in await event_actions(url, event_id)} == {"succeeded"}


async def test_a_worker_stopped_with_sigterm_gives_its_run_back_at_once(make_settings, sqlite_url, clean_redis, sim):
    settings = make_settings(database_url=sqlite_url, redis_url=clean_redis)
    sim.account.faults.append(Fault(0, 1, "/api/contacts/", "POST", delay=3.0))
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("stopped@yopmail.com"))
        env = worker_env(sqlite_url, clean_redis, sim.url)
        first = start_worker(env)
        try:
            await wait_for(lambda: tag_request_arrived(sim), timeout=30)
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=30)
        rows = await event_actions(url, event_id)
        # Released, not held for a lease: the step in flight counts as an attempt, the others do not.
        assert [(a["status"], a["attempts"]) for a in rows] == [("pending", 1), ("pending", 0), ("pending", 0)]
        assert "interrupted" in rows[0]["last_error"]
        second = start_worker(env)
        try:
            await settled(url, event_id)
        finally:
            second.terminate()
            second.wait(timeout=30)
        assert await _all_succeeded(url, event_id)
    assert sim.tag_names("stopped@yopmail.com") == ["Masterclass buyer"]
    assert len(sim.account.enrollments) == 1


async def test_a_503_blip_costs_the_buyer_seconds(make_settings, sqlite_url, sim):
    sim.account.faults.append(Fault(503, 1, "/api/school"))
    engine = create_engine(sqlite_url)
    try:
        with running(make_settings(database_url=sqlite_url)) as url:  # the default retry schedule
            event_id = await post_stripe(url, stripe_checkout("blip@yopmail.com"))
            # The enroll waiting for its retry, as the runner scheduled it (it waits seconds: seen at a 50 ms poll).
            waiting = await _enroll_waiting_for_retry(engine)
            await wait_for(lambda: _all_succeeded(url, event_id), timeout=30)
        async with engine.connect() as conn:
            enroll = (await conn.execute(sa.select(actions).where(actions.c.kind == "enroll"))).one()
            calls = list(
                await conn.execute(sa.select(api_calls).where(api_calls.c.action_id == enroll.id).order_by("id"))
            )
    finally:
        await engine.dispose()
    # The second attempt looks before it enrolls (the first might have got through), then enrolls.
    assert enroll.attempts == 2 and [c.status_code for c in calls] == [503, 200, 201]
    # Seconds, from the service's own records rather than from when this test looked: the retry was put at the
    # schedule's first delay (5 s with its 20 % jitter, so at least 4 s after the 503 came back; the next step of
    # the schedule would be 30 s, at least 24), and it went out when due, not before (a claim takes only due rows).
    answered = calls[0].started_at + timedelta(milliseconds=calls[0].duration_ms)
    assert 4 <= (waiting.next_attempt_at - answered).total_seconds() < 24
    assert waiting.next_attempt_at <= calls[1].started_at


async def _enroll_waiting_for_retry(engine) -> Any:
    found: list[Any] = []

    async def pending_after_one_attempt() -> bool:
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(actions).where(actions.c.kind == "enroll"))).one_or_none()
        if row is not None and row.status == "pending" and row.attempts == 1 and row.next_attempt_at is not None:
            found.append(row)
        return bool(found)

    await wait_for(pending_after_one_attempt, timeout=30)
    return found[0]


async def test_a_request_whose_worker_died_stops_counting_against_the_quota(sim, clean_redis):
    redis = Redis.from_url(clean_redis)
    key = account_key(sim.url, {"X-API-Key": SIM_KEY})
    live = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}, quota=RedisQuota(redis, key=key))
    try:
        # A worker sent the account's first request and was killed before the answer: never observed.
        await RedisQuota(redis, key=key).acquire()
        # Until an answer tells the quota, nobody else sends: the live worker waits...
        try:
            await asyncio.wait_for(live.session().get_json("/api/tags"), timeout=0.5)
            raise AssertionError("a request went out while the quota was still unknown")
        except TimeoutError:
            pass
        # ...until the dead request's ticket lapses (60 s after it was taken; moved back here instead of waiting).
        members = await redis.zrange(f"{key}:inflight", 0, -1)
        await redis.zadd(f"{key}:inflight", dict.fromkeys(members, 1))
        await asyncio.wait_for(live.session().get_json("/api/tags"), timeout=5)
        assert await redis.zcard(f"{key}:inflight") == 0
    finally:
        await live.aclose()
        await redis.aclose()
    # The budget is the account's: other credentials get a budget of their own, not this one's window.
    assert account_key(sim.url, {"X-API-Key": "another-account"}) != key
