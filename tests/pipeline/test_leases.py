"""Several API replicas and workers on one database: a duty that must have one holder (retention and alerts, the
unplanned-event sweep) runs once per turn whoever asks, a dead holder's duty is taken over, and what every process
does (alerts, probes, due runs) is done once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from app.accounts.holds import probe_holds
from app.pipeline import alerts
from app.pipeline.settle import run
from app.pipeline.sweep import sweep
from app.pipeline.upkeep import UPKEEP_TURN, maintain_pipeline
from app.store import holds, leases
from app.store.db import create_engine
from app.store.models import account_holds, actions, utcnow
from app.store.statuses import ActionStatus
from tests.conftest import running, wait_for
from tests.factories import drip_settings, stripe_checkout
from tests.flows import a_week_passes, plan_and_store, processes, store_unplanned
from tests.servers import alert_receiver


async def waiting_for_approval(database_url: str) -> None:
    """A purchase whose actions have waited two days for approval: the approvals alert is due."""
    engine = create_engine(database_url)
    try:
        ids = await plan_and_store(
            engine, stripe_checkout("patient@yopmail.com"), event_type="checkout.session.completed"
        )
        async with engine.begin() as conn:
            await conn.execute(
                actions.update()
                .where(actions.c.id.in_(ids))
                .values(status=ActionStatus.AWAITING_APPROVAL, created_at=utcnow() - timedelta(days=2))
            )
    finally:
        await engine.dispose()


async def test_a_turn_goes_to_one_of_many_takers_and_a_dead_holders_duty_is_taken_over(database_url):
    engines = [create_engine(database_url) for _ in range(4)]
    now = utcnow()
    turn = timedelta(minutes=10)
    try:
        taken = await asyncio.gather(
            *(leases.take(engine, "upkeep", f"p{n}", turn=turn, now=now) for n, engine in enumerate(engines))
        )
        assert taken.count(True) == 1
        first = f"p{taken.index(True)}"
        other = "p0" if first != "p0" else "p1"
        assert await leases.holder(engines[0], "upkeep") == (first, now + turn)
        # Its holder is alive or not, the turn runs to its end: nobody else, and not the holder again.
        assert not await leases.take(engines[1], "upkeep", other, turn=turn, now=now + turn - timedelta(seconds=1))
        assert not await leases.take(engines[1], "upkeep", first, turn=turn, now=now + timedelta(minutes=1))
        # The holder died: once its turn ended, the next to ask takes the duty over.
        later = now + turn
        assert await leases.take(engines[1], "upkeep", other, turn=turn, now=later)
        assert await leases.holder(engines[0], "upkeep") == (other, later + turn)
        # Another duty is its own lease.
        assert await leases.take(engines[2], "leftovers", first, turn=turn, now=now)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_two_processes_alerting_at_once_send_one_message(make_settings, database_url):
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=database_url, alert_webhook_url=alert_url)
        engines = [create_engine(database_url) for _ in range(2)]
        now = utcnow()
        try:
            sent = await asyncio.gather(
                *(alerts.send(engine, settings, kind="dead", text="action x is dead", now=now) for engine in engines)
            )
            assert sorted(sent) == [False, True]
            # The hour over, the kind may be sent again: once.
            later = now + timedelta(hours=1)
            sent = await asyncio.gather(
                *(alerts.send(engine, settings, kind="dead", text="action y is dead", now=later) for engine in engines)
            )
            assert sorted(sent) == [False, True]
        finally:
            for engine in engines:
                await engine.dispose()
    assert [text.removeprefix("systeme-flow: ") for text in received] == ["action x is dead", "action y is dead"]


async def test_two_upkeeps_on_one_database_run_one_turn_and_the_next_turn_is_taken_over(make_settings, database_url):
    await waiting_for_approval(database_url)
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=database_url, alert_webhook_url=alert_url)
        async with processes(settings) as (one, two):
            now = utcnow()
            ran = await asyncio.gather(maintain_pipeline(one, now=now), maintain_pipeline(two, now=now))
            assert sorted(ran) == [False, True]
            holder, taker = (one.holder, two) if ran[0] else (two.holder, one)
            assert (await leases.holder(one.engine, "upkeep")) == (holder, now + UPKEEP_TURN)
            assert not await maintain_pipeline(one, now=now + timedelta(minutes=5))
            assert not await maintain_pipeline(two, now=now + timedelta(minutes=5))
            # The holder is gone: the other process takes the next turn (its approvals alert is within the hour).
            later = now + UPKEEP_TURN
            assert await maintain_pipeline(taker, now=later)
            assert (await leases.holder(one.engine, "upkeep")) == (taker.holder, later + UPKEEP_TURN)
    # One approvals message (the second turn is within its hour); the second turn did its work: the buyer is
    # now past the access deadline and named.
    approvals, unserved = received
    assert "3 actions have waited for approval" in approvals
    assert "1 buyer paid and has no access yet: patient@yopmail.com" in unserved


async def test_two_services_on_one_postgres_send_one_alert(make_settings, postgres_url):
    await waiting_for_approval(postgres_url)
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=postgres_url, alert_webhook_url=alert_url)
        with running(settings), running(settings):
            await wait_for(lambda: len(received) >= 1)
            engine = create_engine(postgres_url)
            try:
                lease = await leases.holder(engine, "upkeep")
                assert lease is not None
                # Both services sweep every second and ask for the upkeep each time: room for a second message.
                await asyncio.sleep(2)
                assert await leases.holder(engine, "upkeep") == lease
            finally:
                await engine.dispose()
    assert len(received) == 1 and "waited for approval" in received[0]


async def test_a_held_account_is_probed_once_however_many_processes_sweep(make_settings, database_url, sim):
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=database_url, alert_webhook_url=alert_url)
        async with processes(settings, 3) as pipelines:
            engine = pipelines[0].engine
            assert await holds.hold(engine, "default", "Invalid API key", now=utcnow() - timedelta(minutes=1))
            async with engine.begin() as conn:
                await conn.execute(account_holds.update().values(next_probe_at=utcnow()))
            resumed = await asyncio.gather(*(probe_holds(p.engine, p.clients, settings) for p in pipelines))
            assert sorted(resumed) == [[], [], ["default"]]
            assert await holds.holds(engine) == []
    probes = [c for c in sim.account.calls if c["method"] == "GET" and c["path"] == "/api/tags"]
    assert len(probes) == 1
    assert len(received) == 1 and "works again" in received[0]


async def test_two_processes_sweeping_at_once_plan_a_leftover_once_and_run_each_action_once(
    make_settings, database_url, sim
):
    settings = make_settings(database_url=database_url)
    async with processes(settings) as (one, two):
        left = await store_unplanned(one.engine, "left@yopmail.com", age=60)
        await asyncio.gather(sweep(one), sweep(two))
        # One of them took the turn of judging leftovers; the other left it alone.
        lease = await leases.holder(one.engine, "leftovers")
        assert lease is not None and lease[0] in (one.holder, two.holder)
        async with one.engine.connect() as conn:
            ids = list(await conn.scalars(sa.select(actions.c.id).where(actions.c.event_id == left.event_id)))
        assert len(ids) == 3  # planned once: one set of actions
        # Both processes were handed the same runs (each sweep dispatches what is due): each runs once.
        await asyncio.gather(*(run(p, action_id) for p in (one, two) for action_id in ids))
        async with one.engine.connect() as conn:
            statuses = list(await conn.scalars(sa.select(actions.c.status).where(actions.c.id.in_(ids))))
    assert statuses == [ActionStatus.SUCCEEDED] * 3
    writes = sim.writes()
    assert len([w for w in writes if w["method"] == "POST" and w["path"] == "/api/contacts"]) == 1


async def test_scheduled_steps_swept_and_run_by_two_processes_at_once_happen_once(
    make_settings, database_url, tmp_path, sim
):
    settings = drip_settings(make_settings, tmp_path, database_url=database_url)
    async with processes(settings) as (one, two):
        left = await store_unplanned(one.engine, "drip@yopmail.com", age=60)
        await asyncio.gather(sweep(one), sweep(two))

        async def run_everywhere(ids: list[str]) -> None:
            await asyncio.gather(*(run(p, action_id) for p in (one, two) for action_id in ids))

        async def of_event() -> dict[str, str]:
            async with one.engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(actions.c.id, actions.c.status).where(actions.c.event_id == left.event_id)
                )
                return {row.id: row.status for row in rows}

        await run_everywhere([i for i, status in (await of_event()).items() if status == ActionStatus.PENDING])
        first = list((await of_event()).values())
        assert first.count(ActionStatus.SCHEDULED) == 2
        assert set(first) == {ActionStatus.SUCCEEDED, ActionStatus.SCHEDULED}
        await a_week_passes(database_url)  # both scheduled steps are due
        await asyncio.gather(sweep(one), sweep(two))
        await run_everywhere(list(await of_event()))
        assert set((await of_event()).values()) == {ActionStatus.SUCCEEDED}
    writes = [(w["method"], w["path"]) for w in sim.writes()]
    assert sim.tag_names("drip@yopmail.com") == ["Masterclass buyer", "Week two"]
    # Each step's requests went out once: the contact, two tags made and put on it, the enrollment, the community.
    assert sorted(writes) == [
        ("POST", "/api/community/communities/7/memberships"),
        ("POST", "/api/contacts"),
        ("POST", "/api/contacts/1001/tags"),
        ("POST", "/api/contacts/1001/tags"),
        ("POST", "/api/school/courses/101/enrollments"),
        ("POST", "/api/tags"),
        ("POST", "/api/tags"),
    ]
