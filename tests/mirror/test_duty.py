"""The mirror sync as a duty of its own: one process reads an account at a time, keeps its lease however long it
reads, never holds the sweep, and waits for the quota request by request."""

from __future__ import annotations

import asyncio
import threading
import time
import types
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.config import rules_environment
from app.mirror.duty import AFTER_FAILURE, duty
from app.mirror.service import SyncRefused, sync_accounts
from app.pipeline.upkeep import sync_mirrors
from app.rules.loader import parse_rules
from app.simulator.state import Fault
from app.store import leases
from app.store.db import create_engine
from app.store.mirror import load_sync
from app.store.models import events, utcnow
from app.store.statuses import Priority
from app.systeme.client import READ_TRIES
from app.systeme.errors import TransientApiError
from app.systeme.quota import MAX_WAIT_SECONDS, Quota
from tests.conftest import running, wait_for
from tests.factories import RULES, seed_leads
from tests.flows import processes, store_unplanned
from tests.servers import in_process_worker

RULES_FILE = parse_rules(RULES, path="r", env=rules_environment()).file
ENROLLMENTS = "/api/school/enrollments"


def contact_pages(sim) -> int:
    return len([c for c in sim.account.calls if c["method"] == "GET" and c["path"] == "/api/contacts"])


def listing_asked(sim) -> bool:
    return any(c["path"] == ENROLLMENTS for c in sim.account.calls)


async def test_two_processes_asking_at_once_read_the_account_once(make_settings, database_url, sim):
    seed_leads(sim, 150)
    settings = make_settings(database_url=database_url, mirror_mode="complete")
    async with processes(settings) as (one, two):
        done = await asyncio.gather(sync_mirrors(one), sync_mirrors(two))
        assert sorted(len(reports) for reports in done) == [0, 1]
        assert await load_sync(one.engine, "default") is not None
        # Synced and fresh: asking again reads nothing.
        assert list(await asyncio.gather(sync_mirrors(one), sync_mirrors(two))) == [[], []]
    assert contact_pages(sim) == 2  # 150 contacts: two pages, read once


async def test_a_sync_keeps_its_lease_while_it_reads_however_long(make_settings, database_url, sim):
    seed_leads(sim, 10)
    release = threading.Event()
    sim.account.faults.append(Fault(0, 1, ENROLLMENTS, "GET", release=release))
    settings = make_settings(database_url=database_url, mirror_mode="complete")
    turn = timedelta(seconds=2)  # the lease as taken; renewed every half second while the read goes on
    async with processes(settings) as (one, two):
        first = asyncio.create_task(sync_mirrors(one, turn=turn))
        try:
            await wait_for(lambda: listing_asked(sim))
            taken = await leases.holder(one.engine, duty("default"))
            assert taken is not None and taken[0] == one.holder
            # The read outlives the turn it took: the lease would have ended, and is still its holder's.
            await wait_for(lambda: utcnow() > taken[1] + timedelta(seconds=1))
            assert await sync_mirrors(two, turn=turn) == []
            lease = await leases.holder(one.engine, duty("default"))
            assert lease is not None and lease[0] == one.holder and lease[1] > utcnow()
        finally:
            release.set()
        (report,) = await first
        assert report.contacts_read == 10
        # Done: the lease is let go at once (the next process to ask finds the mirror fresh).
        lease = await leases.holder(one.engine, duty("default"))
        assert lease is not None and lease[1] <= utcnow()
    assert contact_pages(sim) == 1


async def test_a_dead_holders_sync_is_taken_over_once_its_lease_ends(make_settings, database_url, sim):
    seed_leads(sim, 10)
    settings = make_settings(database_url=database_url, mirror_mode="complete")
    async with processes(settings) as (one, two):
        now = utcnow()
        # A holder that died mid-read: its lease is there, nobody renews it.
        assert await leases.take(one.engine, duty("default"), one.holder, turn=timedelta(minutes=2), now=now)
        assert await sync_mirrors(two, now=now + timedelta(minutes=1)) == []
        (report,) = await sync_mirrors(two, now=now + timedelta(minutes=2))
        assert report.contacts_read == 10
        # The late holder cannot renew a turn that ended: it has lost it.
        assert not await leases.renew(one.engine, duty("default"), one.holder, turn=timedelta(minutes=2), now=utcnow())


async def test_a_failed_sync_is_tried_again_minutes_later_from_where_it_stopped(make_settings, database_url, sim):
    seed_leads(sim, 150)
    sim.account.faults.append(Fault(503, READ_TRIES, "/api/contacts", "GET", skip=1))
    settings = make_settings(database_url=database_url, mirror_mode="complete")
    async with processes(settings) as (one, two):
        assert await sync_mirrors(one) == []  # failed at its second page
        asked = len(sim.account.calls)
        # Not tried again at every sweep: the failed read keeps its lease a few minutes, by any process.
        assert await sync_mirrors(two) == [] and len(sim.account.calls) == asked
        (report,) = await sync_mirrors(two, now=utcnow() + AFTER_FAILURE)
        assert report.resumed == 1 and report.contacts_read == 150
    # The first page, the second (asked READ_TRIES times, failing each), the second again once resumed.
    assert contact_pages(sim) == 1 + READ_TRIES + 1


async def test_a_busy_moment_does_not_end_a_read(make_settings, database_url, sim):
    seed_leads(sim, 150)
    # A 503 at the second page: asked again, the read goes on.
    sim.account.faults.append(Fault(503, 1, "/api/contacts", "GET", skip=1))
    settings = make_settings(database_url=database_url, mirror_mode="complete")
    async with processes(settings) as (one, _):
        (report,) = await sync_mirrors(one)
    assert report.contacts_read == 150 and report.resumed == 0
    assert contact_pages(sim) == 3  # the first page, the second answered 503, then whole


async def test_the_operator_need_not_wait_for_a_failed_service_sync(make_settings, database_url, sim, complete):
    seed_leads(sim, 150)
    sim.account.faults.append(Fault(503, READ_TRIES, "/api/contacts", "GET", skip=1))
    settings = make_settings(database_url=database_url, mirror_mode="complete")
    async with processes(settings) as (one, _):
        assert await sync_mirrors(one) == []  # failed: the service tries again only minutes later
        (report,) = await sync_accounts(one.engine, complete, RULES_FILE, ["default"])
    # The operator's command, asked now, is not refused for the service's pause: it reads the account.
    assert report.contacts_read == 150


async def test_the_command_refuses_an_account_the_service_is_syncing(make_settings, database_url, sim, complete):
    engine = create_engine(database_url)
    try:
        assert await leases.take(engine, duty("default"), "the service", turn=timedelta(minutes=2), now=utcnow())
        with pytest.raises(SyncRefused, match="is being synced by the service now"):
            await sync_accounts(engine, complete, RULES_FILE, ["default"])
        assert await load_sync(engine, "default") is None and sim.account.calls == []
    finally:
        await engine.dispose()


class WaitingQuota:
    """The account's quota, busy: each request waits WAIT seconds on a simulated clock (the session's) before it
    goes, and refuses as the real one does when its bound is shorter."""

    WAIT = 20.0

    def __init__(self, inner: Quota, clock: list[float]) -> None:
        self.inner, self.clock = inner, clock
        self.bounds: list[float] = []

    async def acquire(self, *, priority: Priority = Priority.NORMAL, max_wait: float = MAX_WAIT_SECONDS) -> str:
        self.bounds.append(max_wait)
        if self.WAIT > max_wait:
            raise TransientApiError("Systeme.io request quota used up", retry_after=self.WAIT, throttled=True)
        self.clock[0] += self.WAIT
        return await self.inner.acquire(priority=priority, max_wait=max_wait)

    async def observe(self, response, ticket: str = "") -> None:
        await self.inner.observe(response, ticket)

    async def wait_seconds(self, *, priority: Priority = Priority.NORMAL) -> float:
        return self.WAIT


async def test_a_sync_waiting_longer_in_all_than_a_request_may_still_completes(engine, complete, sim, monkeypatch):
    seed_leads(sim, 250)
    clock = [time.monotonic()]
    # The session measures its requests' waits on this clock: 20 s each, simulated, so the test stays fast.
    monkeypatch.setattr(
        "app.systeme.client.time", types.SimpleNamespace(monotonic=lambda: clock[0], perf_counter=time.perf_counter)
    )
    client = complete.client("default")
    assert client is not None
    quota = WaitingQuota(client.quota, clock)
    client.quota = quota
    (report,) = await sync_accounts(engine, complete, RULES_FILE, ["default"])
    # The community's name, three pages of contacts, one of each listing: 6 requests, 120 s of waiting in all,
    # each given the product's whole bound for itself.
    assert report.requests == len(quota.bounds) == 6 and report.contacts_read == 250
    assert len(quota.bounds) * WaitingQuota.WAIT > MAX_WAIT_SECONDS
    assert set(quota.bounds) == {MAX_WAIT_SECONDS}
    # A run's session still bounds its requests' waits together.
    run = client.session()
    await run.request("GET", "/api/tags")
    assert run.waited == WaitingQuota.WAIT and quota.bounds[-1] == MAX_WAIT_SECONDS
    await run.request("GET", "/api/tags")
    assert quota.bounds[-1] == MAX_WAIT_SECONDS - WaitingQuota.WAIT


async def test_the_embedded_sweep_goes_on_while_the_sync_reads(make_settings, database_url, sim):
    seed_leads(sim, 10)
    release = threading.Event()
    sim.account.faults.append(Fault(0, 1, ENROLLMENTS, "GET", release=release))
    engine = create_engine(database_url)
    try:
        with running(make_settings(database_url=database_url, mirror_mode="complete")):
            try:
                await wait_for(lambda: listing_asked(sim))  # the sync at start, held in its listing
                left = await store_unplanned(engine, "left@yopmail.com", age=60)

                async def planned() -> bool:
                    async with engine.connect() as conn:
                        query = sa.select(events.c.planned_at).where(events.c.id == left.event_id)
                        return await conn.scalar(query) is not None

                # The sweep judges the event a stopped process left, while the sync is still reading.
                await wait_for(planned)
                assert await load_sync(engine, "default") is None
            finally:
                release.set()

            async def synced() -> bool:
                return await load_sync(engine, "default") is not None

            await wait_for(synced)
    finally:
        await engine.dispose()


async def test_an_arq_worker_syncs_a_complete_mirror_at_start_by_its_own_cron(
    make_settings, database_url, clean_redis, sim
):
    seed_leads(sim, 5)
    settings = make_settings(database_url=database_url, redis_url=clean_redis, mirror_mode="complete")
    engine = create_engine(database_url)
    worker = in_process_worker(settings, clean_redis)
    task = asyncio.create_task(worker.async_run())

    async def synced() -> bool:
        return await load_sync(engine, "default") is not None

    try:
        await wait_for(synced, timeout=30)
    finally:
        task.cancel()
        await worker.close()
        await engine.dispose()
    assert contact_pages(sim) == 1
