"""Fault injection for the delivery guarantees: ordering, a killed worker, Redis emptied, approvals."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import redis

from app.simulator.state import Fault
from tests.conftest import operator, post_stripe, running, wait_for
from tests.factories import stripe_checkout, stripe_headers, stripe_refund
from tests.flows import event_actions, settled, worker_env


async def test_refund_right_after_purchase_leaves_access_revoked(make_settings, database_url, sim):
    now = int(time.time())
    with running(make_settings(database_url=database_url, embedded_concurrency=6)) as url:
        purchase = await post_stripe(url, stripe_checkout("order@yopmail.com", created=now - 5))
        refund = await post_stripe(url, {**stripe_refund("order@yopmail.com"), "created": now - 4})
        await settled(url, purchase, refund)
        assert {a["status"] for a in await event_actions(url, purchase) + await event_actions(url, refund)} == {
            "succeeded"
        }
    assert sim.tag_names("order@yopmail.com") == []
    assert sim.account.enrollments == {} and sim.account.memberships == {}


async def test_a_refund_delivered_before_its_purchase_leaves_no_access(make_settings, database_url, sim):
    now = int(time.time())
    sim.account.membership_delay = 0.0
    with running(make_settings(database_url=database_url)) as url:
        refund = await post_stripe(url, {**stripe_refund("late@yopmail.com"), "created": now - 1})
        await settled(url, refund)
        purchase = await post_stripe(url, stripe_checkout("late@yopmail.com", created=now - 60))
        await settled(url, purchase)
        steps = await event_actions(url, purchase)
        async with operator(url) as http:
            payments = (await http.get("/v1/payments")).json()["items"]
    # Providers do not promise order: the purchase happened first, so the refund that already ran has the last word.
    assert {(a["status"], a["outcome"].split(" (")[0]) for a in steps} == {("skipped", f"overturned by {refund}")}
    assert {a["note"] for a in steps} == {"out of order: an action of a later event for this contact already ran"}
    assert sim.tag_names("late@yopmail.com") == []
    assert sim.account.enrollments == {} and sim.account.memberships == {}
    # Refunded, as event order says, not an unserved payment to alert about.
    assert [(p["event_id"], p["status"]) for p in payments] == [(purchase, "refunded")]


async def test_same_delivery_ten_times_at_once_has_each_effect_once(make_settings, database_url, sim):
    body = json.dumps(stripe_checkout("ten@yopmail.com")).encode()
    with running(make_settings(database_url=database_url)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answers = await asyncio.gather(
                *[http.post("/hooks/stripe", content=body, headers=stripe_headers(body)) for _ in range(10)]
            )
        event_id = answers[0].json()["event_id"]
        await settled(url, event_id)
    assert len(sim.account.contacts) == 1 and len(sim.account.enrollments) == 1 and len(sim.account.memberships) == 1
    assert sim.tag_names("ten@yopmail.com") == ["Masterclass buyer"]


async def test_redis_emptied_while_actions_are_pending_loses_nothing(make_settings, sqlite_url, clean_redis, sim):
    settings = make_settings(database_url=sqlite_url, redis_url=clean_redis)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("flushed@yopmail.com"))
        redis.Redis.from_url(clean_redis).flushdb()  # Redis restarted empty: the jobs are gone
        done = subprocess.run(
            [sys.executable, "-m", "app", "worker", "--burst", "--no-migrate"],
            env=worker_env(sqlite_url, clean_redis, sim.url),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        await settled(url, event_id)
        assert {a["status"] for a in await event_actions(url, event_id)} == {"succeeded"}
    assert sim.tag_names("flushed@yopmail.com") == ["Masterclass buyer"]


async def test_approval_flow_over_the_api(make_settings, database_url, sim):
    owner = sim.account.create_contact({"email": "sub@yopmail.com"})
    sim.simulator.seed(subscriptions=[{"id": 777, "contactId": owner["id"]}, {"id": 778, "contactId": owner["id"]}])
    settings = make_settings(database_url=database_url, admin_token="alice=tok-alice,bob=tok-bob")
    deleted = {"type": "customer.subscription.deleted", "created": int(time.time())}
    with running(settings) as url:
        first = await post_stripe(
            url,
            {**deleted, "id": "evt_sub_1", "data": {"object": {"metadata": {"systeme_subscription_id": "777"}}}},
            admin="tok-alice",
        )
        second = await post_stripe(
            url,
            {**deleted, "id": "evt_sub_2", "data": {"object": {"metadata": {"systeme_subscription_id": "778"}}}},
            admin="tok-alice",
        )
        alice = httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer tok-alice"})
        bob = httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer tok-bob"})
        async with alice, bob:
            waiting = (await alice.get("/v1/actions", params={"status": "awaiting_approval"})).json()["items"]
            assert len(waiting) == 2 and sim.writes() == []
            (a1,) = [a["id"] for a in (await alice.get(f"/v1/events/{first}")).json()["actions"]]
            (a2,) = [a["id"] for a in (await alice.get(f"/v1/events/{second}")).json()["actions"]]
            approved = await alice.post(f"/v1/actions/{a1}/approve")
            assert approved.status_code == 200 and approved.json()["decided_by"] == "alice"
            rejected = await bob.post(f"/v1/actions/{a2}/reject", json={"reason": "customer asked to stay"})
            assert (
                rejected.json()["status"] == "rejected"
                and rejected.json()["last_error"] == "rejected by bob: customer asked to stay"
            )
            again = await bob.post(f"/v1/actions/{a2}/approve")
            assert again.status_code == 409

            async def approved_ran() -> bool:
                return (await alice.get(f"/v1/actions/{a1}")).json()["status"] == "succeeded"

            await wait_for(approved_ran)
    assert sim.account.subscriptions[777]["status"] == "cancelled"
    assert sim.account.subscriptions[778]["status"] == "active"


async def test_dead_actions_retry_in_bulk_and_replay_changes_nothing_twice(make_settings, sqlite_url, sim):
    sim.account.faults.append(Fault(500, 1000, "/api/school"))
    settings = make_settings(database_url=sqlite_url, retry_schedule="0.05s", retry_max_attempts=2)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("dead@yopmail.com"))
        await settled(url, event_id)
        statuses = {a["kind"]: a["status"] for a in await event_actions(url, event_id)}
        assert statuses == {"tag": "succeeded", "enroll": "dead", "add_to_community": "succeeded"}
        sim.account.faults.clear()
        async with operator(url) as http:
            retried = (
                await http.post("/v1/actions/retry", json={"status": "dead", "rule": "masterclass-purchase"})
            ).json()
            assert len(retried["retried"]) == 1
            await settled(url, event_id)
            assert {a["status"] for a in await event_actions(url, event_id)} == {"succeeded"}
            writes = len(sim.writes())
            replay = (await http.post(f"/v1/events/{event_id}/replay")).json()
            assert len(replay["actions"]) == 3
            await settled(url, event_id)
            actions = await event_actions(url, event_id)
    assert len(actions) == 6 and {a["status"] for a in actions} == {"succeeded"}
    assert len(sim.writes()) == writes  # a replay of a fully applied event changes nothing in Systeme.io
    assert len(sim.account.enrollments) == 1


async def test_ordering_holds_across_worker_processes(make_settings, postgres_url, clean_redis, sim):
    settings = make_settings(database_url=postgres_url, redis_url=clean_redis)
    now = int(time.time())
    emails = [f"multi{n}@yopmail.com" for n in range(4)]
    with running(settings) as url:
        events = []
        for email in emails:
            events.append(await post_stripe(url, stripe_checkout(email, created=now - 10)))
            events.append(await post_stripe(url, {**stripe_refund(email), "created": now - 9}))
        env = worker_env(postgres_url, clean_redis, sim.url)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "app", "worker", "--no-migrate"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            await settled(url, *events)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
    for email in emails:
        assert sim.tag_names(email) == []
    assert sim.account.enrollments == {} and sim.account.memberships == {}


async def test_unanswered_approvals_expire_as_rejected(sqlite_url):
    from datetime import timedelta

    from app.rules.engine import RuleSet
    from app.rules.loader import parse_rules
    from app.store.db import create_engine
    from app.store.models import utcnow
    from app.store.operator import expire_approvals
    from app.store.queries import list_actions
    from tests.factories import RULES, record_event

    engine = create_engine(sqlite_url)
    try:
        rules = RuleSet(parse_rules(RULES, path="r", env={}))
        payload = {"id": "evt_exp", "data": {"object": {"metadata": {"systeme_subscription_id": "5"}}}}
        stored = await record_event(
            engine,
            source="stripe",
            event_type="customer.subscription.deleted",
            provider_id="evt_exp",
            payload=payload,
            headers={},
            occurred_at=None,
            outcomes=rules.plan(source="stripe", event_type="customer.subscription.deleted", payload=payload),
            rules_version=rules.version,
            now=utcnow(),
            approval_window=timedelta(days=7),
        )
        assert [s for _, s in stored.actions] == ["awaiting_approval"]
        assert await expire_approvals(engine, now=utcnow() + timedelta(days=6)) == 0
        assert await expire_approvals(engine, now=utcnow() + timedelta(days=8)) == 1
        (action,), _ = await list_actions(engine)
        assert (action["status"], action["decided_by"], action["last_error"]) == (
            "rejected",
            "deadline",
            "no approval before the deadline",
        )
    finally:
        await engine.dispose()


async def test_operator_cli_lists_approves_and_retries(make_settings, sqlite_url, sim):
    owner = sim.account.create_contact({"email": "cli@yopmail.com"})
    sim.simulator.seed(subscriptions=[{"id": 901, "contactId": owner["id"]}])
    with running(make_settings(database_url=sqlite_url)) as url:
        await post_stripe(
            url,
            {
                "id": "evt_cli",
                "type": "customer.subscription.deleted",
                "created": int(time.time()),
                "data": {"object": {"metadata": {"systeme_subscription_id": "901"}}},
            },
        )
        env = {"PATH": os.environ["PATH"], "DATABASE_URL": sqlite_url}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True, timeout=60
            )

        listed = json.loads(cli("actions", "--status", "awaiting_approval", "--json").stdout)
        (action,) = listed["items"]
        assert action["kind"] == "cancel_subscription"
        events = cli("events", "--status", "awaiting_approval")
        assert "stripe/customer.subscription.deleted  [subscription-ended]  (1 awaiting_approval)" in events.stdout
        approved = json.loads(cli("approve", action["id"], "--by", "carol", "--json").stdout)
        assert (approved["status"], approved["decided_by"]) == ("pending", "carol")
        again = cli("approve", action["id"])
        assert again.returncode != 0 and "not awaiting approval" in again.stderr

        async def cancelled() -> bool:
            return sim.account.subscriptions[901]["status"] == "cancelled"

        await wait_for(cancelled)  # the running service's sweep picked the approved action up
        retry = cli("retry", action["id"])
        assert retry.returncode != 0  # still running or already succeeded: nothing to retry
