"""A full read saves its progress with every page: one that fails goes on from the page it reached, and only a
read that completed finds contacts gone."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from app.config import rules_environment
from app.mirror.service import mirror_status, sync_accounts
from app.rules.loader import parse_rules
from app.simulator.state import Fault
from app.store.contacts import load_contact
from app.store.mirror import load_progress, load_sync
from app.systeme.client import READ_TRIES
from app.systeme.errors import TransientApiError
from tests.conftest import SIM_KEY, wait_for
from tests.factories import RULES, seed_leads, stripe_checkout, stripe_refund
from tests.flows import plan_and_store, run

RULES_FILE = parse_rules(RULES, path="r", env=rules_environment()).file
ENROLLMENTS = "/api/school/enrollments"


async def sync(engine, clients, **options):
    (report,) = await sync_accounts(engine, clients, RULES_FILE, ["default"], **options)
    return report


def reads(sim, since: int, path: str = "/api/contacts") -> list[str]:
    """The queries of the listing requests made since call `since`."""
    return [c["query"] for c in sim.account.calls[since:] if c["method"] == "GET" and c["path"] == path]


async def test_a_full_read_that_failed_goes_on_from_the_page_it_reached(engine, complete, sim):
    leads = seed_leads(sim, 350)
    await sync(engine, complete)
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        assert (await http.delete(f"/api/contacts/{leads[0]['id']}")).status_code == 204  # by hand in Systeme.io
    # The next full read fails at its third page of contacts (of four).
    sim.account.faults.append(Fault(503, READ_TRIES, "/api/contacts", "GET", skip=2))
    start = len(sim.account.calls)
    with pytest.raises(TransientApiError):
        await sync(engine, complete, full=True)
    assert len(reads(sim, start)) == 2 + READ_TRIES  # its third page asked READ_TRIES times
    progress = await load_progress(engine, "default")
    assert progress is not None and progress["pages"] == 2 and progress["contacts"]["after"] == leads[200]["id"]
    # Found missing by its page, not deleted: the read did not complete.
    assert list(progress["gone"]) == ["lead0@yopmail.com"]
    assert await load_contact(engine, "default", "lead0@yopmail.com") is not None
    start = len(sim.account.calls)
    report = await sync(engine, complete, full=True)
    # Pages 3 and 4 only, from the last contact of page 2; then the listings, read whole.
    queries = reads(sim, start)
    assert len(queries) == 2 and f"startingAfter={leads[200]['id']}" in queries[0]
    assert report.full and report.resumed == 2 and report.contacts_read == 349 and report.contacts_gone == 1
    assert await load_contact(engine, "default", "lead0@yopmail.com") is None
    assert await load_progress(engine, "default") is None
    entry = await load_contact(engine, "default", "lead349@yopmail.com")
    assert entry is not None and entry[1]["courses"] == {"101": False}


async def test_a_first_read_that_failed_is_not_trusted_and_goes_on(engine, complete, sim):
    seed_leads(sim, 250)
    sim.account.faults.append(Fault(503, READ_TRIES, "/api/contacts", "GET", skip=1))
    with pytest.raises(TransientApiError):
        await sync(engine, complete)
    # Half an account is not the account: no sync recorded, the mirror not complete yet.
    assert await load_sync(engine, "default") is None
    (status,) = await mirror_status(engine, complete)
    assert not status.trusted and status.known == 100
    start = len(sim.account.calls)
    report = await sync(engine, complete)
    assert report.full and report.resumed == 1 and report.contacts_read == 250
    assert len(reads(sim, start)) == 2
    synced = await load_sync(engine, "default")
    assert synced is not None and synced.mode == complete.modes["default"]
    # The community's name, the first page, the second (failed READ_TRIES times, then asked again once resumed),
    # the third, and the listings.
    assert synced.requests == report.requests == 6 + READ_TRIES
    (status,) = await mirror_status(engine, complete)
    assert status.trusted and status.known == 250


async def test_a_listing_that_failed_goes_on_from_its_page(engine, complete, sim):
    leads = seed_leads(sim, 120)
    enrolled = [sim.account.enroll(101, {"contactId": c["id"], "accessType": "full_access"}) for c in leads[:110]]
    await sync(engine, complete)
    sim.account.enroll(101, {"contactId": leads[115]["id"], "accessType": "full_access"})
    sim.account.enrollments.pop(enrolled[3]["id"])  # removed by hand in Systeme.io
    sim.account.faults.append(Fault(503, READ_TRIES, ENROLLMENTS, "GET", skip=1))
    start = len(sim.account.calls)
    with pytest.raises(TransientApiError):
        await sync(engine, complete, full=True)
    assert len(reads(sim, start, ENROLLMENTS)) == 1 + READ_TRIES  # its second page asked READ_TRIES times
    # The first page's grants are written; nobody is marked without the course before the listing is whole.
    entry = await load_contact(engine, "default", "lead3@yopmail.com")
    assert entry is not None and entry[1]["courses"] == {"101": enrolled[3]["id"]}
    start = len(sim.account.calls)
    report = await sync(engine, complete, full=True)
    assert reads(sim, start) == []  # the contacts were read whole already
    (rest,) = reads(sim, start, ENROLLMENTS)
    assert f"startingAfter={enrolled[100]['id']}" in rest
    assert report.resumed == 3 and report.enrollments == {101: 110}
    for n, wanted in ((3, False), (4, enrolled[4]["id"]), (109, enrolled[109]["id"]), (119, False)):
        entry = await load_contact(engine, "default", f"lead{n}@yopmail.com")
        assert entry is not None and entry[1]["courses"]["101"] == wanted, n
    late = await load_contact(engine, "default", "lead115@yopmail.com")
    assert late is not None and isinstance(late[1]["courses"]["101"], int)


async def test_a_contact_registered_and_enrolled_while_the_account_is_read_is_read_too(engine, complete, sim):
    seed_leads(sim, 5)
    release = threading.Event()
    sim.account.faults.append(Fault(0, 1, ENROLLMENTS, "GET", release=release))
    reading = asyncio.create_task(sync(engine, complete))
    try:
        await wait_for(lambda: bool(reads(sim, 0, ENROLLMENTS)))
        # The contacts are read: a buyer registered now is granted the course before its listing is answered.
        late = sim.account.create_contact({"email": "late@yopmail.com"})
        enrolled = sim.account.enroll(101, {"contactId": late["id"], "accessType": "full_access"})
    finally:
        release.set()
    report = await reading
    assert report.contacts_read == 6 and report.enrollments == {101: 1}
    assert len(reads(sim, 0)) == 2  # the contacts, then what was registered since
    entry = await load_contact(engine, "default", "late@yopmail.com")
    assert (
        entry is not None and entry[1]["courses"] == {"101": enrolled["id"]} and entry[1]["communities"] == {"7": False}
    )
    synced = await load_sync(engine, "default")
    assert synced is not None and synced.cursor["registered"] == late["registeredAt"]


async def test_a_purchase_between_two_parts_of_a_read_keeps_its_grants_and_the_refund_revokes(engine, complete, sim):
    leads = seed_leads(sim, 120)
    for contact in leads[:110]:
        if contact is not leads[5]:
            sim.account.enroll(101, {"contactId": contact["id"], "accessType": "full_access"})
    await sync(engine, complete)
    sim.account.faults.append(Fault(503, READ_TRIES, ENROLLMENTS, "GET", skip=1))
    with pytest.raises(TransientApiError):
        await sync(engine, complete, full=True)  # the course's first page read, lead5 not in it
    bought = await plan_and_store(engine, stripe_checkout("lead5@yopmail.com"), event_type="checkout.session.completed")
    assert set((await run(engine, complete, bought[0])).statuses.values()) == {"succeeded"}
    (enrollment,) = [e for e in sim.account.enrollments.values() if e["contact"]["id"] == leads[5]["id"]]
    report = await sync(engine, complete, full=True)
    assert report.resumed and report.enrollments == {101: 110}
    entry = await load_contact(engine, "default", "lead5@yopmail.com")
    assert entry is not None and entry[1]["courses"] == {"101": enrollment["id"]}
    refund = await plan_and_store(engine, stripe_refund("lead5@yopmail.com"), event_type="charge.refunded")
    assert set((await run(engine, complete, refund[0])).statuses.values()) == {"succeeded"}
    assert not [e for e in sim.account.enrollments.values() if e["contact"]["id"] == leads[5]["id"]]
