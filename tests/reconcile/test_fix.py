"""`--fix`: the net effect planned again as new actions, through approval where needed, applied by the service."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app.config import rules_environment
from app.preview.backtest import backtest
from app.reconcile.fix import choose, fix
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.db import create_engine
from app.store.models import actions, utcnow
from app.store.queries import get_event
from tests.conftest import operator, post_stripe, running, wait_for
from tests.factories import RULES, VIP_RULES, record_event, rules_file, stripe_checkout, stripe_refund
from tests.flows import run
from tests.reconcile.conftest import check, purchase

WINDOW = timedelta(days=7)


async def statuses(engine) -> dict[str, str]:
    async with engine.connect() as conn:
        return {r.id: r.status for r in await conn.execute(sa.select(actions.c.id, actions.c.status))}


async def test_fix_plans_the_net_effect_again_and_the_running_service_applies_it(
    make_settings, database_url, sim, hands, client
):
    engine = create_engine(database_url)
    try:
        with running(make_settings(database_url=database_url)) as url:
            for email in ("tag@yopmail.com", "course@yopmail.com", "refunded@yopmail.com", "gone@yopmail.com"):
                await post_stripe(url, stripe_checkout(email))
            await wait_for(lambda: len(sim.account.enrollments) == 4)
            await post_stripe(url, stripe_refund("refunded@yopmail.com"))

            async def all_done() -> bool:
                found = await statuses(engine)
                return len(found) == 15 and set(found.values()) == {"succeeded"}

            await wait_for(all_done)
            # By hand, seconds after the purchases, while the mirror still holds what the runs learned.
            await hands.untag("tag@yopmail.com", "Masterclass buyer")
            await hands.unenroll("course@yopmail.com")
            await hands.enroll("refunded@yopmail.com")
            await hands.delete_contact("gone@yopmail.com")

            report = await check(engine, client)
            assert len(report.drifts) == 6
            choice, approvals = choose(report.drifts, rules_file())
            assert [(d.email, d.last.kind) for d in choice.fix] == [
                ("course@yopmail.com", "enroll"),
                ("refunded@yopmail.com", "unenroll"),
                ("tag@yopmail.com", "tag"),
            ]
            assert [(d.email, reason) for d, reason in choice.left] == [
                ("gone@yopmail.com", "the contact was deleted in Systeme.io; --recreate creates it again")
            ] * 3
            writes = len(sim.writes())
            planned = await fix(engine, None, choice.fix, approvals, by="tester", approval_window=WINDOW)
            assert sorted((p["contact_email"], p["kind"], p["status"]) for p in planned) == [
                ("course@yopmail.com", "enroll", "pending"),
                ("refunded@yopmail.com", "unenroll", "pending"),
                ("tag@yopmail.com", "tag", "pending"),
            ]
            assert {p["redoes"] for p in planned} == {d.last.id for d in choice.fix}
            assert len(sim.writes()) == writes  # planned, not done: the service runs them

            async def fixed() -> bool:
                found = await statuses(engine)
                return all(found[p["id"]] == "succeeded" for p in planned)

            await wait_for(fixed)  # the embedded executor's sweep picked them up
            (tagged,) = [p for p in planned if p["kind"] == "tag"]
            async with operator(url) as http:
                event = (await http.get(f"/v1/events/{tagged['event_id']}")).json()
            new = next(a for a in event["actions"] if a["id"] == tagged["id"])
            assert (new["note"], new["outcome"]) == ("reconcile by tester", "tagged")
            (judged,) = [r for r in event["rules"] if r["rule_id"] == "masterclass-purchase"]
            assert judged["reason"] == "reconcile by tester: planned again tag (tag removed by hand)"
            assert judged["replayed_at"] and judged["earlier"][0]["reason"] == "matched"

        assert sim.tag_names("tag@yopmail.com") == ["Masterclass buyer"]
        enrolled = sorted(e["contact"]["email"] for e in sim.account.enrollments.values())
        assert enrolled == ["course@yopmail.com", "tag@yopmail.com"]
        again = await check(engine, client)
        assert [(d.email, d.kind) for d in again.drifts] == [("gone@yopmail.com", "contact_deleted")] * 3
        # The new actions are marked like a replay's: what was planned when the events arrived did not change.
        rules = RuleSet(parse_rules(RULES, path="rules.yaml", env=rules_environment()))
        assert (await backtest(engine, rules, since=utcnow() - timedelta(hours=1)))["events_changed"] == 0
    finally:
        await engine.dispose()


async def test_a_deleted_contact_is_created_again_only_when_asked(engine, client, sim, hands):
    await purchase(engine, client, "gone@yopmail.com")
    await hands.delete_contact("gone@yopmail.com")
    report = await check(engine, client)
    choice, approvals = choose(report.drifts, rules_file(), recreate=True)
    assert [d.last.kind for d in choice.fix] == ["tag", "enroll", "add_to_community"] and not choice.left
    planned = await fix(engine, None, choice.fix, approvals, by="tester", approval_window=WINDOW)
    result = await run(engine, client, planned[0]["id"])  # one run: the three are one event's, for one contact
    assert set(result.statuses.values()) == {"succeeded"} and len(result.statuses) == 3
    assert sim.tag_names("gone@yopmail.com") == ["Masterclass buyer"]
    assert (await check(engine, client)).drifts == []


async def test_the_fix_waits_for_approval_when_the_rule_now_requires_it(engine, client, sim, hands):
    await purchase(engine, client, "ada@yopmail.com")
    await hands.untag("ada@yopmail.com", "Masterclass buyer")
    report = await check(engine, client)
    stricter = RULES.replace(
        "      - tag: Masterclass buyer\n", "      - tag: { name: Masterclass buyer, approval: required }\n", 1
    )
    choice, approvals = choose(report.drifts, rules_file(stricter))
    planned = await fix(engine, None, choice.fix, approvals, by="tester", approval_window=WINDOW)
    assert [(p["kind"], p["status"]) for p in planned] == [("tag", "awaiting_approval")]
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(actions).where(actions.c.id == planned[0]["id"]))).one()
    assert row.approval == "required" and row.approval_deadline is not None and row.next_attempt_at is None
    event = await get_event(engine, row.event_id)
    assert event is not None and row.id in [a["id"] for a in event["actions"]]


async def test_drifts_of_a_rule_gone_or_disabled_are_left_alone(engine, client, sim, hands):
    await purchase(engine, client, "ada@yopmail.com")
    await hands.untag("ada@yopmail.com", "Masterclass buyer")
    report = await check(engine, client)
    renamed = RULES.replace("id: masterclass-purchase", "id: masterclass-sale")
    choice, _ = choose(report.drifts, rules_file(renamed))
    assert not choice.fix and choice.left[0][1] == "rule 'masterclass-purchase' is no longer in the rules file"
    disabled = RULES.replace("  - id: masterclass-purchase\n", "  - id: masterclass-purchase\n    enabled: false\n")
    choice, _ = choose(report.drifts, rules_file(disabled))
    assert not choice.fix and choice.left[0][1] == "rule 'masterclass-purchase' is disabled"


async def store(engine, payload, *, event_type: str, occurred_at, rules: str = RULES) -> list[str]:
    """An event as ingest stores it, with the provider's event time."""
    rs = RuleSet(parse_rules(rules, path="r", env=rules_environment()))
    stored = await record_event(
        engine,
        source="stripe",
        event_type=event_type,
        provider_id=payload["id"],
        payload=payload,
        headers={},
        occurred_at=occurred_at,
        outcomes=rs.plan(source="stripe", event_type=event_type, payload=payload),
        rules_version=rs.version,
        now=utcnow(),
    )
    return [action_id for action_id, _ in stored.actions]


async def test_a_fix_keeps_its_place_in_event_order(engine, client, sim, hands):
    bought = utcnow() - timedelta(hours=2)
    (tag, *_) = await store(
        engine, stripe_checkout("ada@yopmail.com"), event_type="checkout.session.completed", occurred_at=bought
    )
    await run(engine, client, tag)
    # A later event of the same contact ran: the fix, of the earlier event, runs after it.
    (vip,) = await store(
        engine,
        {"id": "evt_vip", "email": "ada@yopmail.com"},
        event_type="customer.updated",
        occurred_at=bought + timedelta(minutes=5),
        rules=VIP_RULES,
    )
    await run(engine, client, vip)
    await hands.untag("ada@yopmail.com", "Masterclass buyer")
    choice, approvals = choose((await check(engine, client)).drifts, rules_file())
    (planned,) = await fix(engine, None, choice.fix, approvals, by="tester", approval_window=WINDOW)
    assert set((await run(engine, client, planned["id"])).statuses.values()) == {"succeeded"}
    async with engine.connect() as conn:
        note = await conn.scalar(sa.select(actions.c.note).where(actions.c.id == planned["id"]))
    # Who planned it stays, beside what the run noticed.
    assert note == "reconcile by tester; out of order: an action of a later event for this contact already ran"

    # A refund that occurred before the fix was made, delivered late (a provider retrying for hours), still wins:
    # the buyer ends without the tag, and the next check sees the refund's effect as the one that holds.
    refund_ids = await store(
        engine,
        stripe_refund("ada@yopmail.com"),
        event_type="charge.refunded",
        occurred_at=bought + timedelta(minutes=30),
    )
    assert set((await run(engine, client, refund_ids[0])).statuses.values()) == {"succeeded"}
    assert sim.tag_names("ada@yopmail.com") == ["VIP"]
    assert (await check(engine, client)).drifts == []
