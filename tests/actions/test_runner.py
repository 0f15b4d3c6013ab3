"""Running actions against the simulator over HTTP: outcomes, retries, idempotency, destructive checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from app.actions.runner import RetryPolicy, run_action
from app.config import rules_environment
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.actions import claim, due_actions, finish
from app.store.db import create_engine
from app.store.events import record_event
from app.store.models import actions, api_calls, utcnow
from app.store.operator import approve
from app.systeme.client import SystemeClient
from app.systeme.errors import PermanentApiError
from tests.conftest import SIM_KEY
from tests.factories import RULES, stripe_checkout

POLICY = RetryPolicy(base_seconds=0.01, max_attempts=3, lease=timedelta(seconds=30))


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def client(sim):
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY})
    yield client
    await client.aclose()


async def plan_and_store(engine, payload: dict[str, Any], *, event_type: str, rules: str = RULES) -> list[str]:
    rs = RuleSet(parse_rules(rules, path="r", env=rules_environment()))
    outcomes = rs.plan(source="stripe", event_type=event_type, payload=payload)
    stored = await record_event(
        engine,
        source="stripe",
        event_type=event_type,
        provider_id=payload.get("id"),
        payload=payload,
        headers={},
        occurred_at=None,
        outcomes=outcomes,
        rules_version=rs.version,
        now=utcnow(),
        dry_run=False,
    )
    return [action_id for action_id, _ in stored.actions]


async def row(engine, action_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(actions).where(actions.c.id == action_id))).one()


async def calls_of(engine, action_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(sa.select(api_calls).where(api_calls.c.action_id == action_id)))


async def run(engine, client, action_id: str):
    return await run_action(engine=engine, client=client, action_id=action_id, policy=POLICY)


async def run_when_due(engine, client, action_id: str):
    async with engine.begin() as conn:
        await conn.execute(actions.update().where(actions.c.id == action_id).values(next_attempt_at=utcnow()))
    return await run(engine, client, action_id)


async def test_success_records_every_call_and_answer(engine, client, sim):
    tag, enroll, community = await plan_and_store(
        engine, stripe_checkout("a@example.com"), event_type="checkout.session.completed"
    )
    assert (await run(engine, client, tag)).status == "succeeded"
    recorded = await calls_of(engine, tag)
    assert [(c.method, c.path.split("?")[0], c.status_code) for c in recorded] == [
        ("GET", "/api/contacts", 200),
        ("POST", "/api/contacts", 201),
        ("GET", "/api/tags", 200),
        ("POST", "/api/tags", 201),
        ("POST", f"/api/contacts/{sim.contact('a@example.com')['id']}/tags", 204),
    ]
    assert recorded[1].request_body["email"] == "a@example.com"
    for action_id in (enroll, community):
        assert (await run(engine, client, action_id)).status == "succeeded"
    assert (await row(engine, community)).attempts == 1


async def test_transient_failure_is_retried_later_then_succeeds(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("b@example.com"), event_type="checkout.session.completed")
    sim.account.faults.append(__import__("app.simulator.state", fromlist=["Fault"]).Fault(503, 1, "/api/contacts"))
    result = await run(engine, client, tag)
    assert result.status == "pending" and result.next_attempt == 2
    state = await row(engine, tag)
    assert state.status == "pending" and state.attempts == 1
    assert "503" in state.last_error and state.next_attempt_at > utcnow() - timedelta(seconds=1)
    assert (await run_when_due(engine, client, tag)).status == "succeeded"
    assert sim.tag_names("b@example.com") == ["Masterclass buyer"]
    attempts = sorted({c.attempt for c in await calls_of(engine, tag)})
    assert attempts == [1, 2]


async def test_429_honours_retry_after(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("c@example.com"), event_type="checkout.session.completed")
    sim.account.rate_limit, sim.account.window_seconds, sim.account.window_used = 1, 120, 1
    result = await run(engine, client, tag)
    assert result.status == "pending"
    assert result.next_attempt_at is not None
    assert result.next_attempt_at - utcnow() > timedelta(seconds=60)
    assert "429" in (await row(engine, tag)).last_error


async def test_transient_failures_end_dead_after_the_last_attempt(engine, client, sim):
    from app.simulator.state import Fault

    (tag, *_) = await plan_and_store(engine, stripe_checkout("d@example.com"), event_type="checkout.session.completed")
    sim.account.faults.append(Fault(500, 100))
    assert (await run(engine, client, tag)).status == "pending"
    assert (await run_when_due(engine, client, tag)).status == "pending"
    assert (await run_when_due(engine, client, tag)).status == "dead"
    state = await row(engine, tag)
    assert state.attempts == 3 and state.last_error.startswith("gave up after 3 attempts")
    assert tag not in [a for a, _ in await due_actions(engine, now=utcnow() + timedelta(days=1))]


async def test_permanent_failure_stops_with_the_api_message(engine, client, sim):
    payload = stripe_checkout("e@example.com")
    payload["data"]["object"]["customer_details"]["name"] = "x" * 300
    (tag, *_) = await plan_and_store(engine, payload, event_type="checkout.session.completed")
    assert (await run(engine, client, tag)).status == "failed"
    state = await row(engine, tag)
    assert "422" in state.last_error and "too long" in state.last_error
    # The contact upsert failed, so the tag step never ran.
    assert sim.writes() == [{"method": "POST", "path": "/api/contacts", "query": "", "status": 422}]


async def test_effects_happen_once_across_replays(engine, client, sim):
    first = await plan_and_store(engine, stripe_checkout("f@example.com"), event_type="checkout.session.completed")
    for action_id in first:
        await run(engine, client, action_id)
    assert (await run(engine, client, first[0])).status == "not_claimed"
    writes = len(sim.writes())
    replay = await plan_and_store(engine, stripe_checkout("f@example.com"), event_type="checkout.session.completed")
    for action_id in replay:
        assert (await run(engine, client, action_id)).status == "succeeded"
    assert len(sim.writes()) == writes  # already tagged, enrolled and a member: nothing written
    assert len(sim.account.enrollments) == 1 and len(sim.account.memberships) == 1


async def test_expired_lease_lets_another_worker_finish(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("g@example.com"), event_type="checkout.session.completed")
    lost = await claim(engine, tag, now=utcnow(), lease=timedelta(seconds=-1))  # a worker that died mid-way
    assert lost is not None
    assert tag in [a for a, _ in await due_actions(engine, now=utcnow())]
    assert (await run(engine, client, tag)).status == "succeeded"
    # The dead worker's late answer must not overwrite the result.
    assert not await finish(engine, lost, status="failed", error="late", next_attempt_at=None, calls=[], now=utcnow())
    assert (await row(engine, tag)).status == "succeeded"


async def test_fill_keeps_existing_values_and_overwrite_replaces(engine, client, sim):
    sim.account.create_contact({"email": "h@example.com", "fields": [{"slug": "first_name", "value": "Helen"}]})
    for action_id in await plan_and_store(
        engine, stripe_checkout("h@example.com"), event_type="checkout.session.completed"
    ):
        await run(engine, client, action_id)
    fields = {f["slug"]: f["value"] for f in sim.contact("h@example.com")["fields"]}
    assert fields == {"first_name": "Helen"}
    overwrite = RULES.replace(
        "    actions:\n      - tag: Masterclass buyer",
        "      update: overwrite\n    actions:\n      - tag: Masterclass buyer",
    )
    ids = await plan_and_store(
        engine, stripe_checkout("h@example.com"), event_type="checkout.session.completed", rules=overwrite
    )
    await run(engine, client, ids[0])
    fields = {f["slug"]: f["value"] for f in sim.contact("h@example.com")["fields"]}
    assert fields == {"first_name": "Ada Lovelace"}


CANCEL_RULES = (
    RULES
    + """
  - id: cancel-for-contact
    on: stripe/invoice.payment_failed
    contact: { email: "{{ event.email }}" }
    actions:
      - cancel_subscription: { subscription: "{{ event.sub }}", approval: auto }
"""
)


class TestCancelSubscription:
    async def test_only_the_contacts_own_subscription_is_cancelled(self, engine, client, sim):
        owner = sim.account.create_contact({"email": "i@example.com"})
        other = sim.account.create_contact({"email": "j@example.com"})
        sim.simulator.seed(subscriptions=[{"id": 501, "contactId": owner["id"]}, {"id": 502, "contactId": other["id"]}])
        (ok,) = await plan_and_store(
            engine, {"email": "i@example.com", "sub": 501}, event_type="invoice.payment_failed", rules=CANCEL_RULES
        )
        (refused,) = await plan_and_store(
            engine, {"email": "i@example.com", "sub": 502}, event_type="invoice.payment_failed", rules=CANCEL_RULES
        )
        assert (await run(engine, client, ok)).status == "succeeded"
        assert (await run(engine, client, refused)).status == "failed"
        assert "502 is not one of i@example.com's" in (await row(engine, refused)).last_error
        assert sim.account.subscriptions[501]["cancelRequested"] == "WhenBillingPeriodEnds"
        assert "cancelRequested" not in sim.account.subscriptions[502]

    async def test_already_cancelled_is_success_without_a_call(self, engine, client, sim):
        owner = sim.account.create_contact({"email": "k@example.com"})
        sim.simulator.seed(subscriptions=[{"id": 503, "contactId": owner["id"], "status": "cancelled"}])
        (action,) = await plan_and_store(
            engine, {"email": "k@example.com", "sub": 503}, event_type="invoice.payment_failed", rules=CANCEL_RULES
        )
        assert (await run(engine, client, action)).status == "succeeded"
        assert not [c for c in sim.writes() if "cancel" in c["path"]]

    async def test_without_contact_a_422_already_cancelled_is_success(self, engine, client, sim):
        sim.simulator.seed(subscriptions=[{"id": 504, "contactId": 1, "status": "cancelled"}])
        payload = {"id": "evt_sub", "data": {"object": {"metadata": {"systeme_subscription_id": "504"}}}}
        (action,) = await plan_and_store(engine, payload, event_type="customer.subscription.deleted")
        assert (await row(engine, action)).status == "awaiting_approval"
        assert (await run(engine, client, action)).status == "not_claimed"
        assert await approve(engine, action, by="ops", now=utcnow()) == [(action, 1)]
        assert (await run(engine, client, action)).status == "succeeded"
        assert [c["status"] for c in sim.writes()] == [422]

    async def test_not_a_number_fails_permanently(self, engine, client, sim):
        payload = {"id": "evt_sub2", "data": {"object": {"metadata": {}}}}
        (action,) = await plan_and_store(engine, payload, event_type="customer.subscription.deleted")
        await approve(engine, action, by="ops", now=utcnow())
        assert (await run(engine, client, action)).status == "failed"
        assert sim.writes() == []


async def test_unknown_course_name_is_a_permanent_failure(sim, client):
    from app.actions.resolve import course_id

    with pytest.raises(PermanentApiError, match="no course named 'Nope'"):
        await course_id(client.session(), "Nope")
    assert await course_id(client.session(), "Bonus") == 102


CONDITION_RULES = (
    RULES
    + """
  - id: welcome-once
    on: stripe/customer.created
    contact: { email: "{{ event.email }}" }
    unless_tagged: Welcomed
    actions: [ { tag: Welcomed } ]
  - id: upsell-buyers
    on: stripe/customer.created
    contact: { email: "{{ event.email }}" }
    only_if_tagged: Masterclass buyer
    actions: [ { tag: Upsell } ]
"""
)


async def test_tag_conditions_are_checked_against_the_contact_when_running(engine, client, sim):
    welcome, upsell = await plan_and_store(
        engine, {"email": "w@example.com"}, event_type="customer.created", rules=CONDITION_RULES
    )
    assert (await run(engine, client, welcome)).status == "succeeded"
    assert (await run(engine, client, upsell)).status == "skipped"
    assert (
        await row(engine, upsell)
    ).last_error == "skipped: the contact is not tagged 'Masterclass buyer' (only_if_tagged)"
    again, _ = await plan_and_store(
        engine, {"email": "w@example.com"}, event_type="customer.created", rules=CONDITION_RULES
    )
    assert (await run(engine, client, again)).status == "skipped"
    assert (await row(engine, again)).last_error == "skipped: the contact is tagged 'Welcomed' (unless_tagged)"
    assert sim.tag_names("w@example.com") == ["Welcomed"]


async def test_an_action_awaiting_approval_does_not_hold_back_later_ones(engine, client, sim):
    rules = CANCEL_RULES.replace("approval: auto", "approval: required")
    owner = sim.account.create_contact({"email": "held@example.com"})
    sim.simulator.seed(subscriptions=[{"id": 601, "contactId": owner["id"]}])
    (waiting,) = await plan_and_store(
        engine, {"email": "held@example.com", "sub": 601}, event_type="invoice.payment_failed", rules=rules
    )
    later = await plan_and_store(engine, stripe_checkout("held@example.com"), event_type="checkout.session.completed")
    assert (await row(engine, waiting)).status == "awaiting_approval"
    for action_id in later:
        assert (await run(engine, client, action_id)).status == "succeeded"
