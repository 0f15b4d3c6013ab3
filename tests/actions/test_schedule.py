"""Delayed steps in the store and the runner, against the simulator: scheduled rows, their order, cancelling them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from app.accounts.registry import AccountClients
from app.actions.policy import RetryPolicy
from app.actions.runner import run_actions
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.actions import due_actions
from app.store.models import actions, utcnow
from app.store.operator import approve, cancel, earlier_scheduled, run_now
from tests.factories import record_event
from tests.flows import calls_of, row

POLICY = RetryPolicy(delays=(0.01,), max_attempts=3, lease=timedelta(seconds=30))
RULES = RuleSet(
    parse_rules(
        """
version: 1
sources:
  stripe: { type: stripe, secret: whsec_schedule_tests }
rules:
  - id: purchase
    on: stripe/checkout.session.completed
    contact: { email: "{{ event.email }}" }
    actions:
      - enroll: { course: 101 }
      - add_to_community: { community: 7 }
        after: 7d
      - tag: Week two
  - id: welcome
    on: stripe/checkout.session.completed
    contact: { email: "{{ event.email }}" }
    actions:
      - tag: Welcome
  - id: profile
    on: stripe/customer.updated
    contact: { email: "{{ event.email }}" }
    actions:
      - tag: Updated
  - id: refund
    on: stripe/charge.refunded
    contact: { email: "{{ event.email }}" }
    actions:
      - cancel_scheduled: purchase
      - unenroll: { course: 101 }
  - id: reminder
    on: stripe/invoice.created
    contact: { email: "{{ event.email }}" }
    actions:
      - tag: { name: Reminder, approval: required, after: 3d }
""",
        path="r",
        env={},
    )
)


async def store(engine, event_type: str, email: str, *, at: timedelta = timedelta(0)) -> tuple[str, list[str]]:
    """Plan and store an event that occurred `at` from now; (event id, action ids in plan order)."""
    payload = {"email": email}
    stored = await record_event(
        engine,
        source="stripe",
        event_type=event_type,
        provider_id=None,
        payload=payload,
        headers={},
        occurred_at=utcnow() + at,
        outcomes=RULES.plan(source="stripe", event_type=event_type, payload=payload),
        rules_version=RULES.version,
        now=utcnow(),
    )
    return stored.event_id, [action_id for action_id, _ in stored.actions]


async def run(engine, client, action_id: str) -> Any:
    return await run_actions(engine=engine, client=client, action_id=action_id, policy=POLICY)


async def time_passes(engine, days: float) -> None:
    """Scheduled rows' due times move `days` into the past: what a week of waiting would do."""
    async with engine.begin() as conn:
        waiting = await conn.execute(
            sa.select(actions.c.id, actions.c.next_attempt_at).where(actions.c.status == "scheduled")
        )
        for action_id, due in list(waiting):
            await conn.execute(
                actions.update().where(actions.c.id == action_id).values(next_attempt_at=due - timedelta(days=days))
            )


async def test_a_delayed_step_waits_as_a_scheduled_row_and_runs_once_due(engine, client, sim):
    before = utcnow()
    event_id, (enroll, community, week_two, welcome) = await store(engine, "checkout.session.completed", "a@x.io")
    states = [(await row(engine, a)).status for a in (enroll, community, week_two, welcome)]
    assert states == ["pending", "scheduled", "scheduled", "pending"]
    due = (await row(engine, community)).next_attempt_at
    assert before + timedelta(days=7) <= due <= utcnow() + timedelta(days=7)
    # The step after it waits behind it: scheduled for the same time, not pending (nothing to sweep for a week).
    assert (await row(engine, week_two)).next_attempt_at == due

    result = await run(engine, client, enroll)
    # The other rule of the same event and contact is not held back a week behind the purchase's delayed step.
    assert result.statuses == {enroll: "succeeded", welcome: "succeeded"}
    assert [(await row(engine, a)).status for a in (community, week_two)] == ["scheduled", "scheduled"]
    assert sim.account.memberships == {}
    assert [a for a, _ in await due_actions(engine, now=utcnow())] == []
    assert (await run(engine, client, community)).status == "not_claimed"

    # A later event of the contact runs meanwhile, as it should.
    _, (updated,) = await store(engine, "customer.updated", "a@x.io", at=timedelta(minutes=1))
    assert (await run(engine, client, updated)).statuses == {updated: "succeeded"}

    await time_passes(engine, 7)
    assert await due_actions(engine, now=utcnow()) == [(community, 1)]
    result = await run(engine, client, community)
    assert result.statuses == {community: "succeeded", week_two: "succeeded"}
    assert len(sim.account.memberships) == 1 and sim.tag_names("a@x.io") == ["Updated", "Week two", "Welcome"]
    # Waiting a week was the plan, not an event arriving out of order.
    assert {(await row(engine, a)).note for a in (community, week_two)} == {None}
    assert {(await row(engine, a)).event_id for a in (community, week_two)} == {event_id}


async def test_a_delay_never_starts_after_the_event_arrived(engine):
    # A provider's clock three days ahead of ours must not make the buyer wait ten days.
    _, (_, community, *_) = await store(engine, "checkout.session.completed", "h@x.io", at=timedelta(days=3))
    assert (await row(engine, community)).next_attempt_at <= utcnow() + timedelta(days=7)


async def test_a_refund_cancels_the_waiting_steps_at_once_and_only_earlier_ones(engine, client, sim):
    _, (enroll, community, week_two, _welcome) = await store(engine, "checkout.session.completed", "b@x.io")
    await run(engine, client, enroll)
    refund_id, (cancel_step, unenroll) = await store(engine, "charge.refunded", "b@x.io", at=timedelta(minutes=1))
    calls_before = len(sim.account.calls)
    result = await run(engine, client, cancel_step)
    # Not held behind the purchase's week-long step: the refund runs now.
    assert result.statuses == {cancel_step: "succeeded", unenroll: "succeeded"}
    cancelled = [await row(engine, a) for a in (community, week_two)]
    assert {(r.status, r.note) for r in cancelled} == {("cancelled", f"cancelled by event {refund_id} (rule refund)")}
    step = await row(engine, cancel_step)
    assert step.outcome == "cancelled 2 waiting steps of rule purchase"
    assert await calls_of(engine, cancel_step) == []  # our own rows: no Systeme.io request
    assert all(c["path"].startswith("/api/school") for c in sim.account.calls[calls_before:])  # the unenroll only
    assert sim.account.enrollments == {}

    await time_passes(engine, 30)
    assert await due_actions(engine, now=utcnow() + timedelta(days=30)) == []
    assert sim.account.memberships == {}

    # Idempotent: a second refund cancels nothing and succeeds.
    _, (again, _) = await store(engine, "charge.refunded", "b@x.io", at=timedelta(minutes=2))
    assert (await run(engine, client, again)).statuses[again] == "succeeded"
    assert (
        await row(engine, again)
    ).outcome == "nothing to cancel: no step of rule purchase was waiting for this contact"

    # A refund that occurred before a purchase leaves that purchase's steps alone, even when it runs after it.
    _, (enroll2, community2, *_) = await store(engine, "checkout.session.completed", "b@x.io", at=timedelta(hours=2))
    await run(engine, client, enroll2)
    _, (early, _) = await store(engine, "charge.refunded", "b@x.io", at=timedelta(hours=1))
    await run(engine, client, early)
    assert (await row(engine, early)).outcome.startswith("nothing to cancel")
    assert (await row(engine, community2)).status == "scheduled"


async def test_a_step_whose_time_has_come_goes_before_the_contacts_later_events(engine, client, sim):
    _, (enroll, community, week_two, _) = await store(engine, "checkout.session.completed", "g@x.io")
    await run(engine, client, enroll)
    await time_passes(engine, 7)  # due, but no sweep has run it yet
    _, (cancel_step, unenroll) = await store(engine, "charge.refunded", "g@x.io", at=timedelta(minutes=1))
    assert (await run(engine, client, cancel_step)).status == "not_claimed"  # it is the purchase's turn
    assert (await run(engine, client, community)).statuses == {community: "succeeded", week_two: "succeeded"}
    assert (await run(engine, client, cancel_step)).statuses == {cancel_step: "succeeded", unenroll: "succeeded"}
    assert (await row(engine, cancel_step)).outcome.startswith("nothing to cancel")


async def test_cancel_scheduled_runs_in_a_dry_run_too(engine, make_settings, sim):
    dry = AccountClients(make_settings(systeme_api_key=None), None)  # no key: the default account is a dry run
    try:
        _, (enroll, community, *_) = await store(engine, "checkout.session.completed", "c@x.io")
        await run(engine, dry, enroll)
        _, (cancel_step, unenroll) = await store(engine, "charge.refunded", "c@x.io", at=timedelta(minutes=1))
        result = await run(engine, dry, cancel_step)
    finally:
        await dry.aclose()
    assert result.statuses == {cancel_step: "succeeded", unenroll: "skipped"}
    assert (await row(engine, community)).status == "cancelled"
    assert sim.account.calls == []


async def test_an_approval_given_before_the_steps_time_schedules_it(engine):
    _, (now_step,) = await store(engine, "invoice.created", "d@x.io")
    first = await row(engine, now_step)
    assert first.status == "awaiting_approval" and first.next_attempt_at is not None
    assert await approve(engine, now_step, by="alice", now=utcnow()) == []  # nothing to dispatch yet
    approved = await row(engine, now_step)
    assert (approved.status, approved.next_attempt_at, approved.decided_by) == (
        "scheduled",
        first.next_attempt_at,
        "alice",
    )
    # An event whose step's time has passed (it occurred four days ago): approved, it runs at once.
    _, (late,) = await store(engine, "invoice.created", "d@x.io", at=-timedelta(days=4))
    assert await approve(engine, late, by="alice", now=utcnow()) == [(late, 1)]
    assert (await row(engine, late)).status == "pending"
    assert await approve(engine, late, by="alice", now=utcnow()) is None


async def test_operator_runs_a_scheduled_step_now_or_cancels_it(engine, client, sim):
    _, (enroll, community, week_two, _) = await store(engine, "checkout.session.completed", "e@x.io")
    await run(engine, client, enroll)
    # The later step waits behind the earlier one of its rule: running it alone now would only make it wait.
    assert await run_now(engine, week_two, by="bob", now=utcnow()) == []
    assert await earlier_scheduled(engine, week_two) == (community, "add_to_community")
    assert await cancel(engine, community, by="bob", reason="asked to wait", now=utcnow())
    assert not await cancel(engine, community, by="bob", reason=None, now=utcnow())
    gone = await row(engine, community)
    assert (gone.status, gone.decided_by, gone.note) == ("cancelled", "bob", "cancelled by bob: asked to wait")
    assert await run_now(engine, week_two, by="bob", now=utcnow()) == [(week_two, 1)]
    assert (await row(engine, week_two)).note == "run now by bob"
    assert (await run(engine, client, week_two)).statuses == {week_two: "succeeded"}
    assert sim.tag_names("e@x.io") == ["Week two", "Welcome"] and sim.account.memberships == {}


async def test_retention_keeps_an_event_whose_step_waits(engine):
    from app.store.retention import purge

    event_id, (enroll, community, *_) = await store(engine, "checkout.session.completed", "f@x.io")
    async with engine.begin() as conn:
        await conn.execute(actions.update().where(actions.c.id == enroll).values(status="succeeded"))
    assert await purge(engine, before=utcnow() + timedelta(days=1), now=utcnow()) == 0
    async with engine.connect() as conn:
        kept = await conn.scalar(sa.select(sa.func.count()).where(actions.c.event_id == event_id))
    assert kept == 4 and (await row(engine, community)).status == "scheduled"
