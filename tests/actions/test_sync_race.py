"""A full sync and the runs that write the mirror while it reads: what a run wrote after the sync began stays."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.config import rules_environment
from app.mirror.service import sync_accounts
from app.rules.loader import parse_rules
from app.simulator.state import Fault
from app.store.contacts import load_contact
from tests.conftest import wait_for
from tests.factories import RULES, stripe_checkout, stripe_refund
from tests.flows import plan_and_store, run

RULES_FILE = parse_rules(RULES, path="r", env=rules_environment()).file
LISTING = "/api/community/memberships"


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    sim.account.membership_delay = 0.0


async def test_a_run_writing_during_a_full_sync_keeps_its_write_and_the_refund_revokes(engine, complete, sim):
    lead = sim.account.create_contact({"email": "lead@yopmail.com"})
    await sync_accounts(engine, complete, RULES_FILE, ["default"])
    # The next full read: its course listing is answered before the purchase, its community listing is held.
    # (held until the purchase's run has written the mirror, however slow the machine)
    release = threading.Event()
    sim.account.faults.append(Fault(0, 1, LISTING, "GET", release=release))
    syncing = asyncio.create_task(sync_accounts(engine, complete, RULES_FILE, ["default"], full=True))
    await wait_for(lambda: any(c["path"] == LISTING for c in sim.account.calls))
    bought = await plan_and_store(engine, stripe_checkout("lead@yopmail.com"), event_type="checkout.session.completed")
    assert set((await run(engine, complete, bought[0])).statuses.values()) == {"succeeded"}
    assert not syncing.done()  # the run's write landed between the sync's start and its final write
    release.set()
    await syncing
    entry = await load_contact(engine, "default", "lead@yopmail.com")
    assert entry is not None and entry[1]["courses"].get("101") not in (False, None), entry
    assert [e["contact"]["id"] for e in sim.account.enrollments.values()] == [lead["id"]]
    refund = await plan_and_store(engine, stripe_refund("lead@yopmail.com"), event_type="charge.refunded")
    assert set((await run(engine, complete, refund[0])).statuses.values()) == {"succeeded"}
    assert sim.account.enrollments == {}
    assert sim.account.memberships == {}
