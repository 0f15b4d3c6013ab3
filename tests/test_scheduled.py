"""Delayed steps end to end: the service, workers and the simulator over HTTP; restarts, Redis loss, refunds and
operators."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import redis
import sqlalchemy as sa

from app.store.db import create_engine
from app.store.models import actions
from tests.clitools import cli
from tests.conftest import ADMIN, operator, post_stripe, running, wait_for
from tests.factories import drip_settings, stripe_checkout, stripe_refund
from tests.flows import a_week_passes, burst, by_kind, event_actions, settled

# The example on the test rules: the community a week after the purchase; a refund cancels it first.


async def test_a_delayed_step_waits_in_sql_through_a_restart_and_redis_loss(
    make_settings, postgres_url, clean_redis, sim, tmp_path
):
    settings = drip_settings(make_settings, tmp_path, database_url=postgres_url, redis_url=clean_redis)
    created = int(time.time()) - 60
    due = datetime.fromtimestamp(created, UTC) + timedelta(days=7)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("drip@yopmail.com", created=created))
        burst(postgres_url, clean_redis, sim.url)
        steps = by_kind(await event_actions(url, event_id))
        assert {k: a["status"] for k, a in steps.items()} == {
            "Masterclass buyer": "succeeded",
            "enroll": "succeeded",
            "add_to_community": "scheduled",
            "Week two": "scheduled",
        }
        # Counted from the event's time (Stripe's `created`), not from its arrival.
        assert steps["add_to_community"]["next_attempt_at"] == due.isoformat()
        assert steps["Week two"]["next_attempt_at"] == (due + timedelta(days=7)).isoformat()
        listed = cli("actions", "--status", "scheduled", cwd=tmp_path, DATABASE_URL=postgres_url).stdout.splitlines()
        assert len(listed) == 2 and any(f"due {due.isoformat()}" in line for line in listed), listed
    redis.Redis.from_url(clean_redis).flushdb()  # Redis comes back empty, and the service restarts
    with running(settings) as url:
        burst(postgres_url, clean_redis, sim.url)
        steps = by_kind(await event_actions(url, event_id))
        assert steps["add_to_community"]["status"] == "scheduled"
        assert steps["add_to_community"]["next_attempt_at"] == due.isoformat()
        assert sim.account.memberships == {}
        await a_week_passes(postgres_url)
        burst(postgres_url, clean_redis, sim.url)  # its sweep finds the step due and runs it
        steps = by_kind(await event_actions(url, event_id))
    assert steps["add_to_community"]["status"] == "succeeded" and steps["Week two"]["status"] == "succeeded"
    assert steps["add_to_community"]["note"] is None  # waiting was the plan: not "out of order"
    assert len(sim.account.memberships) == 1
    assert sim.tag_names("drip@yopmail.com") == ["Masterclass buyer", "Week two"]


async def test_a_refund_cancels_the_waiting_step_and_its_own_steps_run_at_once(
    make_settings, database_url, sim, tmp_path
):
    now = int(time.time())
    with running(drip_settings(make_settings, tmp_path, database_url=database_url)) as url:
        purchase = await post_stripe(url, stripe_checkout("refunded@yopmail.com", created=now - 60))
        await settled(url, purchase)
        refund = await post_stripe(url, {**stripe_refund("refunded@yopmail.com"), "created": now - 30})
        await settled(url, refund)  # within seconds: not behind the purchase's week-long step
        steps = by_kind(await event_actions(url, purchase))
        undo = await event_actions(url, refund)
        async with operator(url) as http:
            cancelled = (await http.get("/v1/actions", params={"status": "cancelled"})).json()["items"]
            scheduled = (await http.get("/v1/actions", params={"status": "scheduled"})).json()["items"]
            (listed,) = [e for e in (await http.get("/v1/events")).json()["items"] if e["id"] == purchase]
            metrics = (await http.get("/metrics")).text
    assert {a["status"] for a in undo} == {"succeeded"}
    assert undo[0]["kind"] == "cancel_scheduled" and undo[0]["outcome"] == (
        "cancelled 2 waiting steps of rule masterclass-purchase"
    )
    for kind in ("add_to_community", "Week two"):
        assert steps[kind]["status"] == "cancelled"
        assert steps[kind]["note"] == f"cancelled by event {refund} (rule refund-revokes-access)"
    assert {a["id"] for a in cancelled} == {steps["add_to_community"]["id"], steps["Week two"]["id"]}
    assert scheduled == [] and listed["actions"] == {"succeeded": 2, "cancelled": 2}
    assert 'systeme_flow_actions{account="default",kind="add_to_community",status="cancelled"} 1.0' in metrics
    assert sim.tag_names("refunded@yopmail.com") == []
    assert sim.account.enrollments == {} and sim.account.memberships == {}


async def test_operators_run_a_scheduled_step_now_or_cancel_it(make_settings, sqlite_url, sim, tmp_path):
    with running(drip_settings(make_settings, tmp_path, database_url=sqlite_url)) as url:
        first = await post_stripe(url, stripe_checkout("ops@yopmail.com"))
        await settled(url, first)
        steps = by_kind(await event_actions(url, first))
        community, week_two = steps["add_to_community"]["id"], steps["Week two"]["id"]
        async with operator(url) as http:
            behind = await http.post(f"/v1/actions/{week_two}/run-now")
            assert behind.status_code == 409 and f"waits behind {community}" in behind.json()["error"]
            cancelled = await http.post(f"/v1/actions/{community}/cancel", json={"reason": "joins later"})
            assert cancelled.status_code == 200, cancelled.text
            assert (cancelled.json()["status"], cancelled.json()["decided_by"], cancelled.json()["note"]) == (
                "cancelled",
                "admin",
                "cancelled by admin: joins later",
            )
            assert (await http.post(f"/v1/actions/{community}/cancel")).status_code == 409
            ran = await http.post(f"/v1/actions/{week_two}/run-now")
            assert ran.status_code == 200 and ran.json()["status"] in ("pending", "running", "succeeded")
            assert (await http.post("/v1/actions/act_nope/run-now")).status_code == 404
            bogus = await http.get("/v1/actions", params={"status": "bogus"})
            assert bogus.status_code == 400 and "scheduled" in bogus.json()["error"]
        await wait_for(lambda: "Week two" in sim.tag_names("ops@yopmail.com"))
        assert sim.account.memberships == {}

        # The same from the command line, and from the dashboard.
        second = await post_stripe(url, stripe_checkout("cli@yopmail.com"))
        await settled(url, second)
        steps = by_kind(await event_actions(url, second))
        community, week_two = steps["add_to_community"]["id"], steps["Week two"]["id"]
        env = {"DATABASE_URL": sqlite_url}
        listed = cli("actions", "--status", "scheduled", cwd=tmp_path, **env).stdout
        assert f"{community}  scheduled" in listed and f"due {steps['add_to_community']['next_attempt_at']}" in listed
        ran = json.loads(cli("run-now", community, "--by", "carol", "--json", cwd=tmp_path, **env).stdout)
        assert (ran["status"], ran["note"]) == ("pending", "run now by carol")
        await wait_for(lambda: len(sim.account.memberships) == 1)  # the running service's sweep took it
        done = cli("cancel", week_two, "--by", "carol", "--reason", "no", "--json", cwd=tmp_path, **env)
        assert (json.loads(done.stdout)["status"], json.loads(done.stdout)["decided_by"]) == ("cancelled", "carol")
        again = cli("cancel", week_two, cwd=tmp_path, **env)
        assert again.returncode == 2 and "is cancelled, not scheduled" in again.stderr

        third = await post_stripe(url, stripe_checkout("ui@yopmail.com"))
        await settled(url, third)
        week_two = by_kind(await event_actions(url, third))["Week two"]["id"]
        bearer = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=url, headers=bearer) as http:
            rules_page = (await http.get("/ui/rules")).text
            assert "<li>add_to_community: Insiders · after 7d</li>" in rules_page
            assert "<li>cancel_scheduled: masterclass-purchase</li>" in rules_page
            page = (await http.get("/ui/actions", params={"status": "scheduled"})).text
            assert (
                f'action="/ui/actions/{week_two}/run-now"' in page and f'action="/ui/actions/{week_two}/cancel"' in page
            )
            assert '<span class="badge scheduled">scheduled</span>' in page and "due " in page
            posted = await http.post(f"/ui/actions/{week_two}/cancel", data={"reason": "from the dashboard"})
            assert posted.status_code == 303
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            note = await conn.scalar(sa.select(actions.c.note).where(actions.c.id == week_two))
    finally:
        await engine.dispose()
    assert note == "cancelled by admin: from the dashboard"
