"""Convergence to event order: a buyer ends as their events, applied in event-time order, leave them, whatever order
the events arrive or are planned in (app/store/convergence.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.config import rules_environment
from app.pipeline.planner import LEFTOVER_SECONDS, plan_leftovers
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.actions import claim_run, release
from app.store.convergence import lock_contact
from app.store.db import create_engine
from app.store.models import actions, utcnow
from tests.factories import RULES, stripe_checkout, stripe_refund
from tests.flows import POLICY, WINDOW, plan_and_store, row, run, store_unplanned

PURCHASE = "checkout.session.completed"
REFUND = "charge.refunded"


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    sim.account.membership_delay = 0.0


def no_access(sim, email: str) -> bool:
    return sim.tag_names(email) == [] and sim.account.enrollments == {} and sim.account.memberships == {}


async def sweep_plans(engine) -> list[str]:
    """The sweep's planning of leftovers, as production runs it: the runs it dispatched."""
    dispatched: list[str] = []

    async def dispatch(items, **_) -> None:
        dispatched.extend(action_id for action_id, _ in items)

    rules = RuleSet(parse_rules(RULES, path="r", env=rules_environment()))
    await plan_leftovers(engine, rules, dispatch, approval_window=WINDOW, older_than=LEFTOVER_SECONDS)
    return dispatched


async def overturned(engine, action_ids: list[str], refund_id: str) -> list[tuple[str, str]]:
    event_id = (await row(engine, refund_id)).event_id
    rows = [await row(engine, a) for a in action_ids]
    assert {r.outcome.split(" (")[0] for r in rows} == {f"overturned by {event_id}"}
    return [(r.status, r.outcome.split(": ")[1]) for r in rows]


async def test_a_refund_delivered_before_its_purchase_leaves_no_access(engine, client, sim):
    bought = utcnow() - timedelta(minutes=5)
    refund = await plan_and_store(
        engine, stripe_refund("first@yopmail.com"), event_type=REFUND, occurred_at=bought + timedelta(minutes=1)
    )
    assert set((await run(engine, client, refund[0])).statuses.values()) == {"succeeded"}  # nothing to take back
    # The purchase happened first (its provider time), but arrives after its refund ran: in event order the refund
    # has the last word, so none of the purchase's grants is made.
    purchase = await plan_and_store(
        engine, stripe_checkout("first@yopmail.com"), event_type=PURCHASE, occurred_at=bought
    )
    result = await run(engine, client, purchase[0])
    assert set(result.statuses.values()) == {"skipped"}
    # The rules name the community "Insiders" to grant it and 7 to take it back: one community all the same.
    assert await overturned(engine, purchase, refund[0]) == [
        ("skipped", "untag) which already ran"),
        ("skipped", "unenroll) which already ran"),
        ("skipped", "remove_from_community) which already ran"),
    ]
    assert no_access(sim, "first@yopmail.com")
    # No grant was sent: no tag added, no enrollment, no membership asked for.
    assert [w["path"] for w in sim.writes() if w["method"] == "POST" and w["path"] != "/api/contacts"] == []


async def test_a_purchase_the_sweep_plans_after_its_refund_ran_grants_nothing(engine, client, sim):
    # Its replica answered and died before planning it, long enough ago that nothing waits for it any more.
    await store_unplanned(engine, "swept@yopmail.com", age=POLICY.unjudged_wait.total_seconds() + 10)
    refund = await plan_and_store(engine, stripe_refund("swept@yopmail.com"), event_type=REFUND)
    assert set((await run(engine, client, refund[0])).statuses.values()) == {"succeeded"}
    (swept,) = await sweep_plans(engine)
    result = await run(engine, client, swept)
    assert set(result.statuses.values()) == {"skipped"}
    assert [status for status, _ in await overturned(engine, list(result.statuses), refund[0])] == ["skipped"] * 3
    assert no_access(sim, "swept@yopmail.com")


async def test_a_refund_waits_for_an_earlier_event_not_judged_yet(engine, client, sim):
    # The purchase's replica died between its answer and its plan; the refund reaches the other replica.
    await store_unplanned(engine, "waits@yopmail.com", age=LEFTOVER_SECONDS + 5)
    refund = await plan_and_store(engine, stripe_refund("waits@yopmail.com"), event_type=REFUND)
    waiting = await run(engine, client, refund[0])
    assert waiting.status == "waiting" and waiting.retry == (refund[0], 1) and waiting.next_attempt_at is not None
    assert [(await row(engine, a)).status for a in refund] == ["pending"] * 3 and sim.writes() == []
    # The sweep plans the purchase; it runs first, and hands over to the refund, which takes everything back.
    (swept,) = await sweep_plans(engine)
    assert (await run(engine, client, refund[0])).status == "not_claimed"  # the earlier purchase goes first
    granted = await run(engine, client, swept)
    assert set(granted.statuses.values()) == {"succeeded"} and granted.follow_up == ((refund[0], 1),)
    assert sim.tag_names("waits@yopmail.com") == ["Masterclass buyer"]
    revoked = await run(engine, client, refund[0])
    assert [(await row(engine, a)).outcome for a in revoked.statuses] == [
        "untagged",
        "unenrolled",
        "removed from community",
    ]
    assert no_access(sim, "waits@yopmail.com")


async def test_a_purchase_whose_refund_comes_later_grants_then_revokes(engine, client, sim):
    purchase = await plan_and_store(engine, stripe_checkout("normal@yopmail.com"), event_type=PURCHASE)
    assert set((await run(engine, client, purchase[0])).statuses.values()) == {"succeeded"}
    assert [(await row(engine, a)).outcome for a in purchase] == ["tagged", "enrolled", "added to community"]
    refund = await plan_and_store(engine, stripe_refund("normal@yopmail.com"), event_type=REFUND)
    assert set((await run(engine, client, refund[0])).statuses.values()) == {"succeeded"}
    assert [(await row(engine, a)).outcome for a in refund] == ["untagged", "unenrolled", "removed from community"]
    assert no_access(sim, "normal@yopmail.com")


async def test_another_contacts_unjudged_event_holds_a_run_only_until_judged(engine, client, sim):
    await store_unplanned(engine, "someone@yopmail.com", age=LEFTOVER_SECONDS + 5)
    mine = await plan_and_store(engine, stripe_checkout("mine@yopmail.com"), event_type=PURCHASE)
    assert (await run(engine, client, mine[0])).status == "waiting"
    # Judged (by the sweep here): it was about someone else, and the run goes on.
    await sweep_plans(engine)
    assert set((await run(engine, client, mine[0])).statuses.values()) == {"succeeded"}
    assert sim.tag_names("mine@yopmail.com") == ["Masterclass buyer"]


async def test_an_event_left_unjudged_past_the_bound_holds_nobody(engine, client, sim):
    # An event the rules cannot judge stays unplanned; past the bound it no longer holds any run back.
    await store_unplanned(engine, "stuck@yopmail.com", age=POLICY.unjudged_wait.total_seconds() + 1)
    mine = await plan_and_store(engine, stripe_checkout("free@yopmail.com"), event_type=PURCHASE)
    assert set((await run(engine, client, mine[0])).statuses.values()) == {"succeeded"}
    assert sim.tag_names("free@yopmail.com") == ["Masterclass buyer"]


async def test_an_earlier_event_waits_for_a_later_run_under_way(engine, client, sim):
    bought = utcnow() - timedelta(minutes=5)
    refund = await plan_and_store(
        engine, stripe_refund("beside@yopmail.com"), event_type=REFUND, occurred_at=bought + timedelta(minutes=1)
    )
    # A worker holds the refund's run (its requests in flight) when the purchase, which happened first, is planned.
    lease, wait = timedelta(seconds=30), timedelta(minutes=10)
    held = await claim_run(
        engine, refund[0], token="run_beside", now=utcnow(), lease=lease, ordering_wait=wait, max_attempts=3
    )
    assert len(held) == 3
    purchase = await plan_and_store(
        engine, stripe_checkout("beside@yopmail.com"), event_type=PURCHASE, occurred_at=bought
    )
    # Not beside it: a grant racing its revoke could land last.
    assert (await run(engine, client, purchase[0])).status == "not_claimed" and sim.writes() == []
    await release(engine, "run_beside", now=utcnow(), next_attempt_at=None)  # that worker stopped before any request
    # Now in event order: the purchase, then the refund it hands over to.
    granted = await run(engine, client, purchase[0])
    assert set(granted.statuses.values()) == {"succeeded"} and granted.follow_up == ((refund[0], 1),)
    assert set((await run(engine, client, refund[0])).statuses.values()) == {"succeeded"}
    assert no_access(sim, "beside@yopmail.com")


async def test_a_claim_waits_for_another_claim_of_the_same_contact(postgres_url, sim):
    # PostgreSQL runs claims side by side. A refund's claim is in its transaction (its rows marked running, not yet
    # committed) when the purchase that happened before it, planned late, is claimed: without one claim of a
    # contact at a time, the purchase's claim sees the refund still pending and both run, a grant racing its revoke.
    engine = create_engine(postgres_url)
    try:
        bought = utcnow() - timedelta(minutes=5)
        refund = await plan_and_store(
            engine, stripe_refund("skew@yopmail.com"), event_type=REFUND, occurred_at=bought + timedelta(minutes=1)
        )
        purchase = await plan_and_store(
            engine, stripe_checkout("skew@yopmail.com"), event_type=PURCHASE, occurred_at=bought
        )
        lease, wait = timedelta(seconds=30), timedelta(minutes=10)
        async with engine.begin() as conn:
            await lock_contact(conn, "default", "skew@yopmail.com")
            await conn.execute(
                actions.update()
                .where(actions.c.id.in_(refund))
                .values(status="running", claimed_by="run_refund", lease_until=utcnow() + lease)
            )
            other = asyncio.create_task(
                claim_run(
                    engine, purchase[0], token="run_purchase", now=utcnow(), lease=lease, ordering_wait=wait,
                    max_attempts=3,
                )
            )  # fmt: skip
            await asyncio.sleep(0.5)  # long enough for the other claim to have read the rows, were it not waiting
        # Once the refund's claim is committed, the purchase's claim sees its run under way and takes nothing.
        assert await other == []
        assert {(await row(engine, a)).status for a in purchase} == {"pending"}
        # A claim of another contact never waits for this one.
        async with engine.begin() as conn:
            await lock_contact(conn, "default", "skew@yopmail.com")
            elsewhere = await plan_and_store(engine, stripe_checkout("else@yopmail.com"), event_type=PURCHASE)
            taken = await claim_run(
                engine, elsewhere[0], token="run_else", now=utcnow(), lease=lease, ordering_wait=wait, max_attempts=3
            )
            assert len(taken) == 3
    finally:
        await engine.dispose()
