"""Running it for real: metrics, retention, forgetting a person, alerts."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import timedelta

import httpx
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.pipeline import alerts
from app.simulator.state import Fault
from app.store.db import create_engine
from app.store.models import actions, api_calls, events, rule_outcomes, utcnow
from app.store.retention import purge
from tests.conftest import operator, post_stripe, running, wait_for
from tests.factories import stripe_checkout, stripe_headers
from tests.flows import settled
from tests.servers import ServerThread


async def test_metrics_cover_events_actions_and_api_calls(make_settings, sqlite_url, sim):
    with running(make_settings(database_url=sqlite_url)) as url:
        event_id = await post_stripe(url, stripe_checkout("m@yopmail.com"))
        await settled(url, event_id)
        async with httpx.AsyncClient(base_url=url) as http:
            await http.post(
                "/hooks/stripe",
                content=b"{}",
                headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"},
            )
            text = (await http.get("/metrics")).text
    assert 'systeme_flow_actions{account="default",kind="enroll",status="succeeded"} 1.0' in text
    assert re.search(r'systeme_flow_api_calls_last_hour\{status="201"\} [1-9]', text)
    assert "systeme_flow_queue_depth 0.0" in text
    assert 'systeme_flow_action_attempt_seconds_bucket{le="+Inf"} 3.0' in text
    assert re.search(r'systeme_flow_ingest_seconds_count\{source="stripe"\} [1-9]', text)
    assert re.search(r'systeme_flow_events_received_total\{outcome="stored",source="stripe"\} [1-9]', text)


async def test_retention_purges_old_events_but_keeps_their_key_and_what_needs_attention(
    make_settings, database_url, sim
):
    settings = make_settings(database_url=database_url, retry_schedule="0.05s", retry_max_attempts=1)
    event = stripe_checkout("old@yopmail.com")
    with running(settings) as url:
        done_id = await post_stripe(url, event)
        await settled(url, done_id)
        sim.account.faults.append(Fault(500, 1000, "/api/school"))
        dead_id = await post_stripe(url, stripe_checkout("dead-old@yopmail.com"))
        await settled(url, dead_id)
        sim.account.faults.clear()
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                # Pretend both arrived long ago. The second has a dead action: it must be spared.
                await conn.execute(events.update().values(received_at=utcnow() - timedelta(days=100)))
            assert await purge(engine, before=utcnow() - timedelta(days=90), now=utcnow()) == 1
            async with engine.connect() as conn:
                purged = (await conn.execute(sa.select(events).where(events.c.id == done_id))).one()
                assert purged.payload == {} and purged.purged_at is not None
                assert (
                    await conn.scalar(
                        sa.select(sa.func.count()).select_from(actions).where(actions.c.event_id == done_id)
                    )
                    == 0
                )
                assert (
                    await conn.scalar(
                        sa.select(sa.func.count()).select_from(actions).where(actions.c.event_id == dead_id)
                    )
                    == 3
                )
        finally:
            await engine.dispose()
        # A very late redelivery of the purged event is still recognised.
        body = json.dumps(event).encode()
        async with httpx.AsyncClient(base_url=url) as http:
            again = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
        assert again.status_code == 200 and again.json() == {"event_id": done_id, "duplicate": True}


async def test_forget_erases_a_person_but_keeps_counts(make_settings, database_url, sim, tmp_path):
    with running(make_settings(database_url=database_url)) as url:
        mine = await post_stripe(url, stripe_checkout("Private.Person@yopmail.com"))
        other = await post_stripe(url, stripe_checkout("someone@yopmail.com"))
        await settled(url, mine, other)
        async with operator(url) as http:
            answer = await http.delete("/v1/contacts/private.person@yopmail.com")
            assert answer.json() == {"events": 1, "actions": 3}
            forgotten = (await http.get(f"/v1/events/{mine}")).json()
            kept = (await http.get(f"/v1/events/{other}")).json()
    dump = json.dumps(forgotten).lower()
    assert "private.person" not in dump and "ada lovelace" not in dump
    assert forgotten["payload"] == {"forgotten": True} and len(forgotten["actions"]) == 3
    assert {a["status"] for a in forgotten["actions"]} == {"succeeded"}
    assert "someone@yopmail.com" in json.dumps(kept)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            bodies = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(api_calls)
                .where(sa.cast(api_calls.c.response_body, sa.Text).contains("private.person"))
            )
            outcomes = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(rule_outcomes)
                .where(rule_outcomes.c.contact_email == "private.person@yopmail.com")
            )
        assert bodies == 0 and outcomes == 0
    finally:
        await engine.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "app", "forget", "someone@yopmail.com"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "forgotten: 1 event, 3 actions"


async def test_forget_matches_the_address_exactly_not_as_a_substring(make_settings, database_url, sim):
    with running(make_settings(database_url=database_url)) as url:
        short = await post_stripe(url, stripe_checkout("a@yopmail.com"))
        longer = await post_stripe(url, stripe_checkout("ada@yopmail.com"))
        other = stripe_checkout("bea@yopmail.com")
        other["data"]["object"]["metadata"] = {"referred_by": "A@Yopmail.COM", "note": "ask ba@yopmail.com"}
        mentioned = await post_stripe(url, other)
        prefix = await post_stripe(url, stripe_checkout("a@example.co"))
        await settled(url, short, longer, mentioned, prefix)
        async with operator(url) as http:
            answer = await http.delete("/v1/contacts/a@yopmail.com")
            payloads = {
                i: (await http.get(f"/v1/events/{i}")).json()["payload"] for i in (short, longer, mentioned, prefix)
            }
    assert answer.json() == {"events": 2, "actions": 6}
    assert payloads[short] == payloads[mentioned] == {"forgotten": True}
    assert payloads[longer]["data"]["object"]["customer_details"]["email"] == "ada@yopmail.com"
    assert payloads[prefix]["data"]["object"]["customer_details"]["email"] == "a@example.co"


async def test_alerts_go_to_the_webhook_at_most_once_an_hour(make_settings, sqlite_url, sim):
    received: list[dict] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    with ServerThread(Starlette(routes=[Route("/alert", hook, methods=["POST"])])) as receiver:
        sim.account.faults.append(Fault(500, 1000, "/api/school"))
        settings = make_settings(
            database_url=sqlite_url,
            retry_schedule="0.05s",
            retry_max_attempts=1,
            alert_webhook_url=f"{receiver.url}/alert",
        )
        with running(settings) as url:
            first = await post_stripe(url, stripe_checkout("alert1@yopmail.com"))
            second = await post_stripe(url, stripe_checkout("alert2@yopmail.com"))
            await settled(url, first, second)
            await wait_for(lambda: len(received) >= 1)  # sent right after the action is recorded dead
            await asyncio.sleep(0.5)  # room for a second message, which must not come
        engine = create_engine(sqlite_url)
        try:
            # Two dead actions, one message: the second falls within the hour.
            assert [m["text"].split(":")[0] for m in received] == ["systeme-flow"]
            assert "is dead" in received[0]["text"]
            async with engine.begin() as conn:
                await conn.execute(
                    actions.update()
                    .where(actions.c.status == "dead")
                    .values(status="awaiting_approval", created_at=utcnow() - timedelta(days=2))
                )
            assert await alerts.check(engine, settings, now=utcnow()) == ["approvals"]
            assert await alerts.check(engine, settings, now=utcnow()) == []
            assert await alerts.check(engine, settings, now=utcnow() + timedelta(hours=2)) == ["approvals"]
        finally:
            await engine.dispose()
    assert "waited for approval" in received[1]["text"]


async def test_a_rule_that_fired_daily_and_went_silent_is_reported(sqlite_url):
    from app.rules.engine import RuleOutcome
    from tests.factories import record_event

    engine = create_engine(sqlite_url)
    now = utcnow()
    try:
        for day in range(3, 11):
            outcome = RuleOutcome("daily-sales", "matched", "matched", "a@yopmail.com")
            await record_event(
                engine,
                source="stripe",
                event_type="x",
                provider_id=f"d{day}",
                payload={},
                headers={},
                occurred_at=None,
                outcomes=[outcome],
                rules_version="v",
                now=now - timedelta(days=day),
            )
        assert await alerts.silent_rules(engine, now=now, silence=timedelta(hours=48)) == ["daily-sales"]
        assert await alerts.silent_rules(engine, now=now - timedelta(days=2), silence=timedelta(hours=48)) == []
    finally:
        await engine.dispose()
