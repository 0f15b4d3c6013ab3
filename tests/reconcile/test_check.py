"""The drift check against the simulator over HTTP: what it reports, what it reads (GET only), what it leaves alone."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.reconcile.check import GetOnly
from app.reconcile.service import render_text
from app.store.models import actions, utcnow
from app.systeme.client import SystemeClient
from app.systeme.errors import PermanentApiError
from tests.conftest import SIM_KEY
from tests.factories import RULES, stripe_refund
from tests.flows import plan_and_store, run
from tests.reconcile.conftest import check, purchase, refund


def reads(sim, since: int) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in sim.account.calls[since:]]


def found(report) -> list[tuple[str, str, str, str]]:
    return [(d.email, d.kind, d.about, d.target) for d in report.drifts]


async def test_no_drift_after_a_normal_purchase_in_three_reads_per_contact(engine, client, sim):
    await purchase(engine, client, "ada@yopmail.com")
    await purchase(engine, client, "bob@yopmail.com")
    start = len(sim.account.calls)
    fresh = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY})  # its name cache is empty
    try:
        report = await check(engine, fresh)
    finally:
        await fresh.aclose()
    assert report.drifts == [] and report.checked == 2 and report.complete
    # The community is named by name in the rule: looked up once for the whole check, then three reads per contact.
    assert Counter(reads(sim, start)) == {
        "GET /api/community/communities": 1,
        "GET /api/contacts": 2,
        "GET /api/school/enrollments": 2,
        "GET /api/community/memberships": 2,
    }
    assert report.requests == 7
    assert render_text(report) == ["2 contacts checked with 7 requests (GET only, 3.5 per contact): no drift"]


async def test_a_refund_after_the_purchase_is_the_net_effect_not_a_drift(engine, client, sim):
    await purchase(engine, client, "ada@yopmail.com")
    await refund(engine, client, "ada@yopmail.com")
    report = await check(engine, client)
    assert report.drifts == [] and report.checked == 1
    # A purchase after the refund makes "has it" the expectation again.
    await purchase(engine, client, "ada@yopmail.com")
    assert (await check(engine, client)).drifts == []


async def test_hand_changes_are_each_reported_with_reads_only(engine, client, sim, hands):
    for email in ("tag@yopmail.com", "course@yopmail.com", "gone@yopmail.com", "fine@yopmail.com"):
        await purchase(engine, client, email)
    await hands.untag("tag@yopmail.com", "Masterclass buyer")
    await hands.unenroll("course@yopmail.com")
    await hands.delete_contact("gone@yopmail.com")
    start = len(sim.account.calls)
    report = await check(engine, client)
    assert found(report) == [
        ("course@yopmail.com", "removed", "course", "101"),
        ("gone@yopmail.com", "contact_deleted", "tag", "Masterclass buyer"),
        ("gone@yopmail.com", "contact_deleted", "course", "101"),
        ("gone@yopmail.com", "contact_deleted", "community", "7"),
        ("tag@yopmail.com", "removed", "tag", "Masterclass buyer"),
    ]
    assert [c for c in sim.account.calls[start:] if c["method"] != "GET"] == []
    # Three reads per contact, one for a contact that is gone (the community's name is cached from the purchases).
    assert report.requests == 3 * 3 + 1
    lines = render_text(report)
    assert len(lines) == 4
    assert lines[0].startswith("course@yopmail.com  we enrolled in course 101 (masterclass-purchase, ")
    assert lines[0].endswith("Systeme.io: not enrolled  [enrollment deleted]")
    assert lines[1].startswith("gone@yopmail.com  we tagged 'Masterclass buyer' (masterclass-purchase, ")
    assert "; enrolled in course 101 (" in lines[1] and "; added to community 'Insiders' (" in lines[1]
    assert lines[1].endswith("Systeme.io: no contact with this email  [contact deleted]")
    assert lines[2].endswith("Systeme.io: not tagged  [tag removed by hand]")
    assert lines[3] == (
        "4 contacts checked with 10 requests (GET only, 2.5 per contact): "
        "3 drifts (1 contact deleted, 1 enrollment deleted, 1 tag removed by hand)"
    )


async def test_access_granted_again_by_hand_after_a_refund(engine, client, sim, hands):
    await purchase(engine, client, "ada@yopmail.com")
    await refund(engine, client, "ada@yopmail.com")
    await hands.enroll("ada@yopmail.com")
    report = await check(engine, client)
    (drift,) = report.drifts
    assert (drift.kind, drift.about, drift.target) == ("still_there", "course", "101")
    assert drift.last.rule_id == "refund-revokes-access"
    assert drift.why == "access still there after a refund"
    enrollment = next(iter(sim.account.enrollments))
    assert render_text(report)[0].endswith(
        f"we unenrolled from course 101 (refund-revokes-access, {drift.last.at:%Y-%m-%d %H:%M})  "
        f"Systeme.io: enrolled (enrollment {enrollment})  [access still there after a refund]"
    )


async def test_a_renamed_tag_is_known_by_the_id_we_recorded(engine, client, sim, hands):
    await purchase(engine, client, "ada@yopmail.com")
    tag = sim.contact("ada@yopmail.com")["tags"][0]
    assert (await hands.http.put(f"/api/tags/{tag['id']}", json={"name": "Cohort 2026"})).status_code == 200
    assert (await check(engine, client)).drifts == []


async def test_since_and_rule_choose_the_contacts(engine, client, sim, hands):
    old = await purchase(engine, client, "old@yopmail.com")
    await purchase(engine, client, "new@yopmail.com")
    await purchase(engine, client, "refunded@yopmail.com")
    await refund(engine, client, "refunded@yopmail.com")
    async with engine.begin() as conn:
        await conn.execute(
            actions.update().where(actions.c.id.in_(old)).values(updated_at=utcnow() - timedelta(days=40))
        )
    for email in ("old@yopmail.com", "new@yopmail.com", "refunded@yopmail.com"):
        await hands.enroll(email, course=102)  # not ours: never a drift
    await hands.delete_contact("old@yopmail.com")

    report = await check(engine, client, since=timedelta(days=30))
    assert report.checked == 2 and report.drifts == []
    assert len((await check(engine, client, since=timedelta(days=60))).drifts) == 3  # old@ is checked now

    await hands.enroll("refunded@yopmail.com")
    by_rule = await check(engine, client, since=timedelta(days=60), rule="refund-revokes-access")
    assert by_rule.checked == 1 and found(by_rule) == [("refunded@yopmail.com", "still_there", "course", "101")]
    assert (await check(engine, client, rule="no-such-rule")).checked == 0


async def test_a_target_with_an_action_not_run_yet_is_not_judged(engine, client, sim, hands):
    await purchase(engine, client, "ada@yopmail.com")
    await plan_and_store(engine, stripe_refund("ada@yopmail.com"), event_type="charge.refunded")  # planned, not run
    await hands.untag("ada@yopmail.com", "Masterclass buyer")
    start = len(sim.account.calls)
    report = await check(engine, client)
    assert report.drifts == [] and report.in_flight == 3
    assert reads(sim, start) == []  # nothing left to judge for this contact: not even read
    assert "3 not judged, an action on them has not run yet" in render_text(report)[-1]


async def test_accounts_without_a_client_are_said_not_checked(engine, client, sim):
    await purchase(engine, client, "ada@yopmail.com")
    await purchase(engine, client, "shop@yopmail.com")
    async with engine.begin() as conn:
        await conn.execute(
            actions.update().where(actions.c.contact_email == "shop@yopmail.com").values(account="shop2")
        )
    report = await check(engine, client)
    assert report.checked == 1 and not report.complete
    assert report.errors == ["1 contact not checked: no client for account 'shop2' yet"]
    assert report.to_json()["accounts"]["shop2"] == {
        "contacts": 1,
        "checked": 0,
        "requests": 0,
        "error": "no client for account 'shop2' yet",
    }


async def test_transient_failures_are_tried_again_and_a_wrong_key_stops_the_account(engine, client, sim):
    from app.simulator.state import Fault

    await purchase(engine, client, "ada@yopmail.com")
    sim.account.faults.append(Fault(503, 1, "/api/school/enrollments"))
    report = await check(engine, client)
    assert report.complete and report.checked == 1 and report.drifts == []
    sim.account.faults.append(Fault(400, 1, "/api/school/enrollments"))
    report = await check(engine, client)
    assert report.checked == 0 and not report.complete and report.drifts == []
    assert report.unchecked == [
        {
            "account": "default",
            "contact": "ada@yopmail.com",
            "error": "GET /api/school/enrollments answered 400: fault injected",
        }
    ]
    assert render_text(report)[-1].endswith("the check is incomplete; 1 contact could not be read")
    client.client("default").http.headers["X-API-Key"] = "wrong"
    report = await check(engine, client)
    assert report.checked == 0 and report.errors == [
        "account 'default': stopped: GET /api/contacts answered 401: Invalid API key "
        "(the account refused the key: check SYSTEME_API_KEY)"
    ]
    assert "no drift" not in render_text(report)[-1]  # a refused key is not "all in order"


async def test_progress_is_reported_per_contact(engine, client, sim):
    for n in range(3):
        await purchase(engine, client, f"p{n}@yopmail.com")
    seen: list[tuple[str, int, int]] = []
    await check(engine, client, progress=lambda account, done, total: seen.append((account, done, total)))
    assert seen == [("default", 1, 3), ("default", 2, 3), ("default", 3, 3)]


async def test_forgotten_contacts_are_not_checked(engine, client, sim):
    from app.store.retention import forget

    await purchase(engine, client, "ada@yopmail.com")
    await forget(engine, "ada@yopmail.com")
    assert (await check(engine, client)).checked == 0
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(actions)) == 3


async def test_the_session_of_a_check_refuses_to_write(client, sim):
    with pytest.raises(PermanentApiError, match="a drift check only reads: POST /api/tags refused"):
        await GetOnly(client).request("POST", "/api/tags", body={"name": "x"})
    assert sim.account.calls == [] and sim.account.tags == {}


ERASE_RULES = (
    RULES
    + """
  - id: erase
    on: stripe/customer.deleted
    contact: { email: "{{ event.email }}" }
    actions:
      - delete_contact: { approval: auto }
"""
)


async def test_a_contact_we_erased_is_no_drift_and_a_later_purchase_counts_again(engine, client, sim):
    await purchase(engine, client, "gone@yopmail.com")
    (erase,) = await plan_and_store(
        engine, {"email": "gone@yopmail.com"}, event_type="customer.deleted", rules=ERASE_RULES
    )
    assert (await run(engine, client, erase)).statuses == {erase: "succeeded"}
    report = await check(engine, client)
    assert report.drifts == [] and sim.contact("gone@yopmail.com") is None
    await purchase(engine, client, "gone@yopmail.com")
    assert (await check(engine, client)).drifts == []
    await hands_off(sim, "gone@yopmail.com")
    assert [d.kind for d in (await check(engine, client)).drifts] == ["contact_deleted"] * 3


async def hands_off(sim, email: str) -> None:
    """The contact deleted by hand in Systeme.io, not by us: that is drift."""
    sim.account.delete_contact(sim.contact(email)["id"])


async def test_a_membership_asked_for_moments_ago_is_in_flight_not_a_drift(engine, client, sim):
    sim.account.membership_delay = 30.0  # as the real API: accepted (202), listed only a little later
    await purchase(engine, client, "ada@yopmail.com")
    report = await check(engine, client)
    assert report.drifts == [] and report.in_flight == 1
    # Past the minute a membership takes to be listed, one still missing is a drift again.
    async with engine.begin() as conn:
        await conn.execute(
            actions.update()
            .where(actions.c.kind == "add_to_community")
            .values(updated_at=utcnow() - timedelta(minutes=2))
        )
    assert found(await check(engine, client)) == [("ada@yopmail.com", "removed", "community", "7")]
