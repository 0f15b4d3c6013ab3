"""Running actions against the simulator over HTTP: runs, outcomes, retries, idempotency, destructive checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.simulator.state import Account, Fault
from app.store.actions import claim_run, due_actions, finish
from app.store.models import actions, utcnow
from app.store.operator import approve
from app.systeme.errors import PermanentApiError
from tests.factories import RULES, stripe_checkout
from tests.flows import calls_of, plan_and_store, row, run, run_when_due


async def test_one_run_does_every_step_with_the_contact_resolved_once(engine, client, sim):
    tag, enroll, community = await plan_and_store(
        engine, stripe_checkout("a@yopmail.com"), event_type="checkout.session.completed"
    )
    result = await run(engine, client, enroll)  # any action of the run names the whole run
    assert result.statuses == {tag: "succeeded", enroll: "succeeded", community: "succeeded"}
    contact_id = sim.contact("a@yopmail.com")["id"]
    recorded = {
        a: [(c.method, c.path.split("?")[0], c.status_code) for c in await calls_of(engine, a)] for a in result.statuses
    }
    assert recorded[tag] == [
        ("GET", "/api/contacts", 200),
        ("POST", "/api/contacts", 201),
        ("GET", "/api/tags", 200),
        ("POST", "/api/tags", 201),
        ("POST", f"/api/contacts/{contact_id}/tags", 204),
    ]
    # A contact created seconds ago has no enrollment or membership to look for.
    assert recorded[enroll] == [("POST", "/api/school/courses/101/enrollments", 201)]
    assert recorded[community] == [
        ("GET", "/api/community/communities", 200),
        ("POST", "/api/community/communities/7/memberships", 202),
    ]
    outcomes = [(r.outcome, r.attempts) for r in [await row(engine, a) for a in (tag, enroll, community)]]
    assert outcomes == [("tagged", 1), ("enrolled", 1), ("added to community", 1)]


async def test_a_transient_failure_at_a_step_resumes_there(engine, client, sim):
    tag, enroll, community = await plan_and_store(
        engine, stripe_checkout("b@yopmail.com"), event_type="checkout.session.completed"
    )
    sim.account.faults.append(Fault(503, 1, "/api/school"))
    result = await run(engine, client, tag)
    assert result.status == "rescheduled" and result.retry == (enroll, 2)
    assert result.statuses == {tag: "succeeded", enroll: "pending"}
    state = await row(engine, enroll)
    assert state.attempts == 1 and "503" in state.last_error
    later = await row(engine, community)  # not reached: it waits behind the step that failed, its attempt unused
    assert (later.status, later.attempts, later.next_attempt_at) == ("pending", 0, state.next_attempt_at)
    assert (await run_when_due(engine, client, tag)).statuses == {enroll: "succeeded", community: "succeeded"}
    assert sorted({c.attempt for c in await calls_of(engine, enroll)}) == [1, 2]
    assert len(sim.account.enrollments) == 1  # the second attempt read before it wrote, and found none


async def test_a_retry_heals_a_cached_tag_id_the_restarted_simulator_no_longer_knows(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("r@yopmail.com"), event_type="checkout.session.completed")
    sim.account.faults.append(Fault(503, 1, "/api/contacts/", method="POST"))  # the tag is created and cached first
    assert (await run(engine, client, tag)).statuses == {tag: "pending"}
    # The simulator restarts between the attempts: its state is new, the name cache still holds the old tag id.
    sim.simulator.account = Account()
    sim.simulator.seed(courses=[{"id": 101, "name": "Masterclass"}], communities=[{"id": 7, "name": "Insiders"}])
    assert (await run_when_due(engine, client, tag)).statuses[tag] == "succeeded"
    assert sim.tag_names("r@yopmail.com") == ["Masterclass buyer"]
    second = [(c.method, c.path.split("?")[0], c.status_code) for c in await calls_of(engine, tag) if c.attempt == 2]
    assert any(m == "POST" and p.endswith("/tags") and s == 422 for m, p, s in second)  # healed, as a first try does


async def test_429_waits_retry_after_and_costs_no_attempt(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("c@yopmail.com"), event_type="checkout.session.completed")
    sim.account.rate_limit, sim.account.window_seconds, sim.account.window_used = 1, 120, 1
    result = await run(engine, client, tag)
    assert result.status == "rescheduled"
    state = await row(engine, tag)
    assert state.attempts == 0 and "429" in state.last_error
    wait = (state.next_attempt_at - utcnow()).total_seconds()
    assert 100 < wait <= 120  # the Retry-After the API gave, not a backoff of our own


async def test_transient_failures_end_dead_after_the_last_attempt(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("d@yopmail.com"), event_type="checkout.session.completed")
    sim.account.faults.append(Fault(500, 100))
    assert (await run(engine, client, tag)).statuses[tag] == "pending"
    assert (await run_when_due(engine, client, tag)).statuses[tag] == "pending"
    assert (await run_when_due(engine, client, tag)).statuses[tag] == "dead"
    state = await row(engine, tag)
    assert state.attempts == 3 and state.last_error.startswith("gave up after 3 attempts")
    assert tag not in [a for a, _ in await due_actions(engine, now=utcnow() + timedelta(days=1))]


async def test_permanent_failure_stops_with_the_api_message(engine, client, sim):
    # Systeme.io refuses the contact itself (its address): every step of the run fails with it.
    sim.account.faults.append(Fault(422, 1, "/api/contacts", "POST", 0.0, "email: no mail server at this domain"))
    ids = await plan_and_store(engine, stripe_checkout("e@yopmail.com"), event_type="checkout.session.completed")
    result = await run(engine, client, ids[0])
    assert set(result.statuses.values()) == {"failed"}
    state = await row(engine, ids[0])
    assert "422" in state.last_error and "no mail server" in state.last_error
    # The contact was refused once; the other steps fail with the same answer without asking again.
    assert sim.writes() == [{"method": "POST", "path": "/api/contacts", "query": "", "status": 422}]


async def test_effects_happen_once_across_replays(engine, client, sim):
    first = await plan_and_store(engine, stripe_checkout("f@yopmail.com"), event_type="checkout.session.completed")
    await run(engine, client, first[0])
    assert (await run(engine, client, first[0])).status == "not_claimed"
    calls = len(sim.account.calls)
    replay = await plan_and_store(engine, stripe_checkout("f@yopmail.com"), event_type="checkout.session.completed")
    result = await run(engine, client, replay[0])
    assert set(result.statuses.values()) == {"succeeded"}
    assert len(sim.account.calls) == calls  # the mirror knows it is all granted: not even a read
    assert [(await row(engine, a)).outcome for a in replay] == [
        "already tagged",
        "already enrolled",
        "already a member",
    ]


async def test_an_abandoned_run_is_taken_over_and_the_late_answer_ignored(engine, client, sim):
    (tag, *_) = await plan_and_store(engine, stripe_checkout("g@yopmail.com"), event_type="checkout.session.completed")
    lost = await claim_run(  # a worker that died mid-way: its lease is already over
        engine,
        tag,
        token="run_dead",
        now=utcnow(),
        lease=timedelta(seconds=-1),
        ordering_wait=timedelta(minutes=10),
        max_attempts=10,
    )
    assert len(lost) == 3
    assert tag in [a for a, _ in await due_actions(engine, now=utcnow())]
    assert set((await run(engine, client, tag)).statuses.values()) == {"succeeded"}
    # The dead worker's late answer must not overwrite the result.
    late = await finish(
        engine, lost[0], token="run_dead", status="failed", error="late", next_attempt_at=None, calls=[], now=utcnow()
    )
    assert not late and (await row(engine, tag)).status == "succeeded"


async def test_fill_keeps_existing_values_and_overwrite_replaces(engine, client, sim):
    sim.account.create_contact({"email": "h@yopmail.com", "fields": [{"slug": "first_name", "value": "Helen"}]})
    ids = await plan_and_store(engine, stripe_checkout("h@yopmail.com"), event_type="checkout.session.completed")
    await run(engine, client, ids[0])
    fields = {f["slug"]: f["value"] for f in sim.contact("h@yopmail.com")["fields"]}
    assert fields == {"first_name": "Helen"}
    overwrite = RULES.replace(
        "    actions:\n      - tag: Masterclass buyer",
        "      update: overwrite\n    actions:\n      - tag: Masterclass buyer",
    )
    ids = await plan_and_store(
        engine, stripe_checkout("h@yopmail.com"), event_type="checkout.session.completed", rules=overwrite
    )
    await run(engine, client, ids[0])
    fields = {f["slug"]: f["value"] for f in sim.contact("h@yopmail.com")["fields"]}
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
        owner = sim.account.create_contact({"email": "i@yopmail.com"})
        other = sim.account.create_contact({"email": "j@yopmail.com"})
        sim.simulator.seed(subscriptions=[{"id": 501, "contactId": owner["id"]}, {"id": 502, "contactId": other["id"]}])
        (ok,) = await plan_and_store(
            engine, {"email": "i@yopmail.com", "sub": 501}, event_type="invoice.payment_failed", rules=CANCEL_RULES
        )
        (refused,) = await plan_and_store(
            engine, {"email": "i@yopmail.com", "sub": 502}, event_type="invoice.payment_failed", rules=CANCEL_RULES
        )
        assert (await run(engine, client, ok)).statuses[ok] == "succeeded"
        assert (await run(engine, client, refused)).statuses[refused] == "failed"
        assert "502 is not one of i@yopmail.com's" in (await row(engine, refused)).last_error
        assert sim.account.subscriptions[501]["cancelRequested"] == "WhenBillingPeriodEnds"
        assert "cancelRequested" not in sim.account.subscriptions[502]
        assert (await row(engine, ok)).outcome == "cancelled at the end of the billing period"

    async def test_already_cancelled_is_success_without_a_call(self, engine, client, sim):
        owner = sim.account.create_contact({"email": "k@yopmail.com"})
        sim.simulator.seed(subscriptions=[{"id": 503, "contactId": owner["id"], "status": "cancelled"}])
        (action,) = await plan_and_store(
            engine, {"email": "k@yopmail.com", "sub": 503}, event_type="invoice.payment_failed", rules=CANCEL_RULES
        )
        assert (await run(engine, client, action)).statuses[action] == "succeeded"
        assert (await row(engine, action)).outcome == "already cancelled"
        assert not [c for c in sim.writes() if "cancel" in c["path"]]

    async def test_a_refusal_that_mentions_cancel_is_not_taken_for_success(self, engine, client, sim):
        owner = sim.account.create_contact({"email": "pending@yopmail.com"})
        sim.simulator.seed(subscriptions=[{"id": 505, "contactId": owner["id"]}])
        detail = "Subscription cannot be cancelled while a payment is pending."
        sim.account.faults.append(Fault(422, 1, "/api/payment/subscriptions/505/cancel", "POST", detail=detail))
        (action,) = await plan_and_store(
            engine,
            {"email": "pending@yopmail.com", "sub": 505},
            event_type="invoice.payment_failed",
            rules=CANCEL_RULES,
        )
        assert (await run(engine, client, action)).statuses[action] == "failed"
        assert "cannot be cancelled while a payment is pending" in (await row(engine, action)).last_error

    async def test_without_contact_a_422_is_a_failure_with_the_apis_words(self, engine, client, sim):
        # The subscription's status cannot be read without its contact, so a refusal is reported, not guessed at.
        sim.simulator.seed(subscriptions=[{"id": 504, "contactId": 1, "status": "cancelled"}])
        payload = {"id": "evt_sub", "data": {"object": {"metadata": {"systeme_subscription_id": "504"}}}}
        (action,) = await plan_and_store(engine, payload, event_type="customer.subscription.deleted")
        assert (await row(engine, action)).status == "awaiting_approval"
        assert (await run(engine, client, action)).status == "not_claimed"
        assert await approve(engine, action, by="ops", now=utcnow()) == [(action, 1)]
        assert (await run(engine, client, action)).statuses[action] == "failed"
        assert "already cancelled" in (await row(engine, action)).last_error
        assert [c["status"] for c in sim.writes()] == [422]

    async def test_not_a_number_fails_permanently(self, engine, client, sim):
        payload = {"id": "evt_sub2", "data": {"object": {"metadata": {}}}}
        (action,) = await plan_and_store(engine, payload, event_type="customer.subscription.deleted")
        await approve(engine, action, by="ops", now=utcnow())
        assert (await run(engine, client, action)).statuses[action] == "failed"
        assert sim.writes() == []


async def test_unknown_course_name_is_a_permanent_failure(sim, client):
    from app.actions.resolve import course_id

    with pytest.raises(PermanentApiError, match="no course named 'Nope'"):
        await course_id(client.client("default").session(), "Nope")
    assert await course_id(client.client("default").session(), "Bonus") == 102


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
        engine, {"email": "w@yopmail.com"}, event_type="customer.created", rules=CONDITION_RULES
    )
    assert (await run(engine, client, welcome)).statuses == {welcome: "succeeded", upsell: "skipped"}
    assert (
        await row(engine, upsell)
    ).outcome == "skipped: the contact is not tagged 'Masterclass buyer' (only_if_tagged)"
    again, _ = await plan_and_store(
        engine, {"email": "w@yopmail.com"}, event_type="customer.created", rules=CONDITION_RULES
    )
    assert (await run(engine, client, again)).statuses[again] == "skipped"
    assert (await row(engine, again)).outcome == "skipped: the contact is tagged 'Welcomed' (unless_tagged)"
    assert sim.tag_names("w@yopmail.com") == ["Welcomed"]


async def test_an_action_awaiting_approval_does_not_hold_back_later_ones(engine, client, sim):
    rules = CANCEL_RULES.replace("approval: auto", "approval: required")
    owner = sim.account.create_contact({"email": "held@yopmail.com"})
    sim.simulator.seed(subscriptions=[{"id": 601, "contactId": owner["id"]}])
    (waiting,) = await plan_and_store(
        engine, {"email": "held@yopmail.com", "sub": 601}, event_type="invoice.payment_failed", rules=rules
    )
    later = await plan_and_store(engine, stripe_checkout("held@yopmail.com"), event_type="checkout.session.completed")
    assert (await row(engine, waiting)).status == "awaiting_approval"
    assert set((await run(engine, client, later[0])).statuses.values()) == {"succeeded"}


async def test_an_unexpected_error_inside_a_request_ends_recorded_and_dead(engine, client, sim):
    rules = RULES.replace("- tag: Masterclass buyer", '- tag: "{{ event.data.object.metadata.tag }}"')
    payload = stripe_checkout("huge@yopmail.com")
    payload["data"]["object"]["metadata"]["tag"] = "x" * 65536  # httpx refuses the URL it makes
    (tag, *_) = await plan_and_store(engine, payload, event_type="checkout.session.completed", rules=rules)
    statuses = [(await run_when_due(engine, client, tag)).statuses.get(tag) for _ in range(3)]
    assert statuses == ["pending", "pending", "dead"]
    state = await row(engine, tag)
    assert state.attempts == 3 and "unexpected error" in state.last_error
    last = [c for c in await calls_of(engine, tag) if c.attempt == 3][-1]
    assert last.error and len(last.path) <= 500  # every attempt ends recorded, whole


async def test_a_stored_action_whose_parameters_do_not_parse_fails_alone_and_clearly(engine, client, sim):
    tag, enroll, community = await plan_and_store(
        engine, stripe_checkout("old@yopmail.com"), event_type="checkout.session.completed"
    )
    # As an older version or a hand edit could have left them: a renamed key, and a kind this version does not know.
    async with engine.begin() as conn:
        await conn.execute(sa.update(actions).where(actions.c.id == enroll).values(params={"course_id": 101}))
        await conn.execute(sa.update(actions).where(actions.c.id == community).values(kind="join_forum"))
    result = await run(engine, client, tag)
    assert result.statuses == {tag: "succeeded", enroll: "failed", community: "failed"}
    broken = await row(engine, enroll)
    assert broken.attempts == 1 and broken.last_error == (
        "the stored parameters of this enroll action do not fit it (course: Field required): nothing was sent"
    )
    assert "unknown action kind 'join_forum'" in (await row(engine, community)).last_error
    assert await calls_of(engine, enroll) == [] and sim.account.enrollments == {}
