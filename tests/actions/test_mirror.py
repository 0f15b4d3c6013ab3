"""The contact mirror: requests per scenario at the quota floor, and a mirror gone stale that heals itself."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from app.store.models import contacts
from tests.conftest import SIM_KEY
from tests.factories import VIP_RULES, stripe_checkout, stripe_refund
from tests.flows import calls_of, plan_and_store, row, run


async def purchase(engine, client, email: str) -> dict[str, str]:
    ids = await plan_and_store(engine, stripe_checkout(email), event_type="checkout.session.completed")
    return (await run(engine, client, ids[0])).statuses


async def refund(engine, client, email: str) -> dict[str, str]:
    ids = await plan_and_store(engine, stripe_refund(email), event_type="charge.refunded")
    return (await run(engine, client, ids[0])).statuses


def requests_made(sim, since: int) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in sim.account.calls[since:]]


async def age_mirror(engine, email: str, by: timedelta = timedelta(hours=2)) -> None:
    async with engine.begin() as conn:
        entry = (await conn.execute(sa.select(contacts.c.learned_at).where(contacts.c.email == email))).one()
        await conn.execute(contacts.update().where(contacts.c.email == email).values(learned_at=entry.learned_at - by))


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    """These tests count the requests of a refund right after its purchase: the simulator lists a membership as
    soon as it accepts it here (explicitly lenient); the delayed listing has its own tests in test_strict_api.py."""
    sim.account.membership_delay = 0.0


@pytest.fixture
async def warm(engine, client, sim):
    """A first buyer: the tag and community names are resolved and cached, as after a service's first sale."""
    assert set((await purchase(engine, client, "first@yopmail.com")).values()) == {"succeeded"}


async def test_requests_per_scenario_at_the_quota_floor(engine, client, sim, warm):
    start = len(sim.account.calls)
    await purchase(engine, client, "new@yopmail.com")
    cid = sim.contact("new@yopmail.com")["id"]
    assert requests_made(sim, start) == [
        "GET /api/contacts",  # find
        "POST /api/contacts",  # create
        f"POST /api/contacts/{cid}/tags",  # tag
        "POST /api/school/courses/101/enrollments",  # enroll: a new contact has none to look for
        "POST /api/community/communities/7/memberships",  # add to community
    ]

    sim.account.create_contact(
        {"email": "known@yopmail.com", "fields": [{"slug": "first_name", "value": "Ada Lovelace"}]}
    )
    start = len(sim.account.calls)
    await purchase(engine, client, "known@yopmail.com")
    assert len(requests_made(sim, start)) == 6  # find, tag, then a look and a grant for each of the two others

    start = len(sim.account.calls)
    statuses = await purchase(engine, client, "new@yopmail.com")  # the same purchase again
    assert set(statuses.values()) == {"succeeded"} and requests_made(sim, start) == []

    start = len(sim.account.calls)
    assert set((await refund(engine, client, "new@yopmail.com")).values()) == {"succeeded"}
    enrollment = [e for e in sim.account.calls[start:] if "enrollments/" in e["path"]]
    assert len(requests_made(sim, start)) == 4 and enrollment[0]["method"] == "DELETE"
    assert sim.tag_names("new@yopmail.com") == []
    assert not [e for e in sim.account.enrollments.values() if e["contact"]["id"] == cid]
    assert not [m for m in sim.account.memberships.values() if m["contact"]["id"] == cid]


async def test_a_contact_deleted_by_hand_is_found_missing_and_created_again(engine, client, sim, warm):
    await purchase(engine, client, "gone@yopmail.com")
    old = sim.contact("gone@yopmail.com")["id"]
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        assert (await http.delete(f"/api/contacts/{old}")).status_code == 204
    # The mirror is fresh and points at the deleted contact: the write answers 404, and the step heals.
    (vip,) = await plan_and_store(engine, {"email": "gone@yopmail.com"}, event_type="customer.updated", rules=VIP_RULES)
    assert (await run(engine, client, vip)).statuses == {vip: "succeeded"}
    assert sim.contact("gone@yopmail.com")["id"] != old and sim.tag_names("gone@yopmail.com") == ["VIP"]
    calls = [(c.method, c.path.split("?")[0], c.status_code) for c in await calls_of(engine, vip)]
    assert ("POST", f"/api/contacts/{old}/tags", 404) in calls and ("POST", "/api/contacts", 201) in calls


async def test_a_tag_removed_by_hand_makes_the_refund_a_no_op_not_a_failure(engine, client, sim, warm):
    await purchase(engine, client, "untagged@yopmail.com")
    contact = sim.contact("untagged@yopmail.com")
    contact["tags"] = []
    statuses = await refund(engine, client, "untagged@yopmail.com")
    assert set(statuses.values()) == {"succeeded"}
    untag = next(a for a in statuses)
    assert (await row(engine, untag)).outcome == "was not tagged"


async def test_a_tag_renamed_by_hand_is_still_removed_by_the_refund(engine, client, sim, warm):
    await purchase(engine, client, "renamed@yopmail.com")
    tag = sim.contact("renamed@yopmail.com")["tags"][0]
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        renamed = await http.put(f"/api/tags/{tag['id']}", json={"name": "Masterclass (2025 cohort)"})
        assert renamed.status_code == 200
    await age_mirror(engine, "renamed@yopmail.com")  # days later, as refunds come
    statuses = await refund(engine, client, "renamed@yopmail.com")
    assert set(statuses.values()) == {"succeeded"}
    assert sim.tag_names("renamed@yopmail.com") == []


async def test_an_enrollment_removed_by_hand_heals_on_refund_and_on_a_later_purchase(engine, client, sim, warm):
    await purchase(engine, client, "course@yopmail.com")
    sim.account.enrollments.clear()
    statuses = await refund(engine, client, "course@yopmail.com")
    assert set(statuses.values()) == {"succeeded"}
    outcomes = [(await row(engine, a)).outcome for a in statuses]
    assert outcomes == ["untagged", "was not enrolled", "removed from community"]
    await age_mirror(engine, "course@yopmail.com")
    await purchase(engine, client, "course@yopmail.com")
    assert len(sim.account.enrollments) == 1


async def test_a_tag_deleted_in_the_account_is_created_again_for_the_next_buyer(engine, client, sim, warm):
    tag = next(t for t in sim.account.tags.values() if t["name"] == "Masterclass buyer")
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        assert (await http.delete(f"/api/tags/{tag['id']}")).status_code == 204
    statuses = await purchase(engine, client, "after@yopmail.com")  # the cached tag id now answers 422
    assert set(statuses.values()) == {"succeeded"}
    assert sim.tag_names("after@yopmail.com") == ["Masterclass buyer"]
    assert [t["name"] for t in sim.account.tags.values()] == ["Masterclass buyer"]


async def test_a_refund_for_an_unknown_email_creates_no_contact_and_writes_nothing(engine, client, sim, warm):
    start = len(sim.account.calls)
    ids = await plan_and_store(engine, stripe_refund("erased@yopmail.com"), event_type="charge.refunded")
    assert set((await run(engine, client, ids[0])).statuses.values()) == {"succeeded"}
    # Only the finds: taking something away never creates the contact it would take it from.
    assert {call for call in requests_made(sim, start)} == {"GET /api/contacts"}
    assert sim.contact("erased@yopmail.com") is None
    assert {(await row(engine, i)).outcome for i in ids} == {"no contact in Systeme.io: nothing to remove"}
    # A purchase still creates it.
    assert set((await purchase(engine, client, "erased@yopmail.com")).values()) == {"succeeded"}
    assert sim.tag_names("erased@yopmail.com") == ["Masterclass buyer"]


async def test_a_refund_after_the_contact_was_deleted_does_not_bring_it_back(engine, client, sim, warm):
    await purchase(engine, client, "erased@yopmail.com")
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        assert (await http.delete(f"/api/contacts/{sim.contact('erased@yopmail.com')['id']}")).status_code == 204
    # The mirror still points at the deleted contact: the first write answers 404, and the find finds nobody.
    start = len(sim.account.calls)
    ids = await plan_and_store(engine, stripe_refund("erased@yopmail.com"), event_type="charge.refunded")
    assert set((await run(engine, client, ids[0])).statuses.values()) == {"succeeded"}
    assert sim.contact("erased@yopmail.com") is None
    assert {(await row(engine, i)).outcome for i in ids} == {"no contact in Systeme.io: nothing to remove"}
    assert "POST /api/contacts" not in requests_made(sim, start)
