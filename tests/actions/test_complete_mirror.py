"""The complete mirror: `sync` reads the account (then only what is new), and runs then skip every lookup."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from app.config import rules_environment
from app.mirror.service import mirror_status, sync_accounts
from app.mirror.upkeep import keep_mirrors
from app.pipeline.planner import plan_events
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.contacts import load_contact
from app.store.db import create_engine
from app.store.events import NewEvent, record_events
from app.store.mirror import count_miss, load_entries, load_sync
from app.store.models import mirror_syncs, utcnow
from app.store.modes import note_modes
from app.store.plans import Unplanned
from tests.clitools import cli, run_cli
from tests.conftest import SIM_KEY, running, wait_for
from tests.factories import RULES, stripe_checkout, stripe_refund, write_rules
from tests.flows import WINDOW, plan_and_store, run

OLD = "2026-01-01T{:02d}:{:02d}:00+00:00"
RULES_FILE = parse_rules(RULES, path="r", env=rules_environment()).file


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    sim.account.membership_delay = 0.0


def seed(sim, count: int, *, prefix: str = "lead") -> list[dict]:
    """Contacts already in the account, registered long ago (as a seller's leads are)."""
    made = []
    for n in range(count):
        contact = sim.account.create_contact(
            {"email": f"{prefix}{n}@yopmail.com", "fields": [{"slug": "first_name", "value": "Ada Lovelace"}]}
        )
        contact["registeredAt"] = OLD.format(n // 60, n % 60)
        made.append(contact)
    return made


def requests_made(sim, since: int) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in sim.account.calls[since:]]


async def purchase(engine, clients, email: str) -> dict[str, str]:
    ids = await plan_and_store(engine, stripe_checkout(email), event_type="checkout.session.completed")
    return (await run(engine, clients, ids[0])).statuses


async def sync(engine, clients, **options):
    (report,) = await sync_accounts(engine, clients, RULES_FILE, ["default"], **options)
    return report


async def test_sync_fills_the_mirror_and_counts_its_requests(engine, complete, sim):
    leads = seed(sim, 150)
    sim.account.add_contact_tag(leads[0]["id"], {"tagId": sim.account.create_tag({"name": "Lead"})["id"]})
    enrollment = sim.account.enroll(101, {"contactId": leads[1]["id"], "accessType": "full_access"})
    membership = sim.account.join(7, {"contactId": leads[2]["id"]})
    start = len(sim.account.calls)
    report = await sync(engine, complete)
    # Two pages of contacts (100 each), the community's name, one page of each listing.
    assert requests_made(sim, start) == [
        "GET /api/community/communities",
        "GET /api/contacts",
        "GET /api/contacts",
        "GET /api/school/enrollments",
        "GET /api/community/memberships",
    ]
    assert report.requests == 5 and report.full and report.contacts_read == 150 and report.contacts_known == 150
    assert report.enrollments == {101: 1} and report.memberships == {7: 1}
    first = await load_contact(engine, "default", "lead0@yopmail.com")
    assert first is not None and first[0] == leads[0]["id"] and list(first[1]["tags"].values()) == ["Lead"]
    assert first[1]["courses"] == {"101": False} and first[1]["communities"] == {"7": False}
    second = await load_contact(engine, "default", "lead1@yopmail.com")
    assert second is not None and second[1]["courses"] == {"101": enrollment["id"]}
    third = await load_contact(engine, "default", "lead2@yopmail.com")
    assert third is not None and third[1]["communities"] == {"7": membership["id"]}
    synced = await load_sync(engine, "default")
    assert synced is not None and synced.mode == complete.modes["default"] and synced.requests == 5


async def test_a_second_sync_reads_only_what_is_new(engine, complete, sim):
    leads = seed(sim, 120)
    await sync(engine, complete)
    fresh = [sim.account.create_contact({"email": f"new{n}@yopmail.com"}) for n in range(3)]
    late = sim.account.enroll(101, {"contactId": leads[5]["id"], "accessType": "full_access"})
    sim.account.enroll(101, {"contactId": fresh[0]["id"], "accessType": "full_access"})
    start = len(sim.account.calls)
    report = await sync(engine, complete)
    # The three new ones, and the last one seen before: read again, since times have whole seconds.
    assert not report.full and report.contacts_read == 4 and report.contacts_known == 123
    calls = sim.account.calls[start:]
    # One page of new contacts, and each listing newest first, stopping at what the last sync saw.
    assert [c["path"] for c in calls] == [
        "/api/contacts",
        "/api/school/enrollments",
        "/api/community/memberships",
    ]
    assert "registeredAfter=" in calls[0]["query"] and "order=desc" in calls[1]["query"]
    assert report.requests == 3 and report.enrollments == {101: 2}
    old = await load_contact(engine, "default", "lead5@yopmail.com")
    assert old is not None and old[1]["courses"] == {"101": late["id"]}
    new = await load_contact(engine, "default", "new1@yopmail.com")
    assert new is not None and new[1]["courses"] == {"101": False}
    # --full reads everything again.
    assert (await sync(engine, complete, full=True)).contacts_read == 123


async def test_a_new_buyer_costs_one_request_for_the_contact(engine, complete, sim):
    seed(sim, 10)
    await sync(engine, complete)
    assert set((await purchase(engine, complete, "warm@yopmail.com")).values()) == {"succeeded"}  # tag name cached
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "buyer@yopmail.com")).values()) == {"succeeded"}
    cid = sim.contact("buyer@yopmail.com")["id"]
    assert requests_made(sim, start) == [
        "POST /api/contacts",  # no find: the mirror is the account
        f"POST /api/contacts/{cid}/tags",
        "POST /api/school/courses/101/enrollments",
        "POST /api/community/communities/7/memberships",
    ]


async def test_a_known_contact_costs_only_its_writes(engine, complete, sim):
    leads = seed(sim, 10)
    await sync(engine, complete)
    await purchase(engine, complete, "warm@yopmail.com")
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "lead3@yopmail.com")).values()) == {"succeeded"}
    assert requests_made(sim, start) == [
        f"POST /api/contacts/{leads[3]['id']}/tags",
        "POST /api/school/courses/101/enrollments",
        "POST /api/community/communities/7/memberships",
    ]
    # The same purchase again: the mirror knows it is all granted.
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "lead3@yopmail.com")).values()) == {"succeeded"}
    assert requests_made(sim, start) == []


async def test_a_contact_made_behind_the_mirrors_back_is_served_and_counted(engine, complete, sim):
    seed(sim, 10)
    await sync(engine, complete)
    await purchase(engine, complete, "warm@yopmail.com")
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        made = await http.post("/api/contacts", json={"email": "sneaky@yopmail.com"})
        assert made.status_code == 201
    sim.account.enroll(101, {"contactId": made.json()["id"], "accessType": "full_access"})
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "sneaky@yopmail.com")).values()) == {"succeeded"}
    cid = made.json()["id"]
    made_calls = requests_made(sim, start)
    assert made_calls[:3] == ["POST /api/contacts", "GET /api/contacts", f"PATCH /api/contacts/{cid}"]
    # Found, not created: its enrollment is looked for (and found), not granted twice.
    assert "GET /api/school/enrollments" in made_calls
    assert "POST /api/school/courses/101/enrollments" not in made_calls
    assert len([e for e in sim.account.enrollments.values() if e["contact"]["id"] == cid]) == 1
    assert sim.tag_names("sneaky@yopmail.com") == ["Masterclass buyer"]
    synced = await load_sync(engine, "default")
    assert synced is not None and synced.misses == 1
    (status,) = await mirror_status(engine, complete)
    assert status.trusted and "  misses: 1" in " ".join(status.lines(utcnow()))


async def test_a_mirror_synced_under_another_mode_is_not_trusted(engine, complete, sim):
    seed(sim, 10)
    await sync(engine, complete)
    async with engine.begin() as conn:
        await conn.execute(mirror_syncs.update().values(mode="live:default:0badc0de"))
    start = len(sim.account.calls)
    await purchase(engine, complete, "careful@yopmail.com")
    assert requests_made(sim, start)[:2] == ["GET /api/contacts", "POST /api/contacts"]  # find first, as learning
    (status,) = await mirror_status(engine, complete)
    assert not status.trusted and any("not trusted" in line for line in status.lines(utcnow()))


async def test_learning_accounts_are_unchanged_by_a_sync(engine, client, sim):
    seed(sim, 10)
    (report,) = await sync_accounts(engine, client, RULES_FILE, ["default"])
    assert report.contacts_known == 10
    start = len(sim.account.calls)
    await purchase(engine, client, "learning@yopmail.com")
    assert requests_made(sim, start)[0] == "GET /api/contacts"


async def test_the_simulator_filters_contacts_by_registration_as_documented(sim):
    seed(sim, 2)
    sim.account.create_contact({"email": "today@yopmail.com"})
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        after = await http.get("/api/contacts", params={"registeredAfter": "2026-06-01T00:00:00Z", "limit": 10})
        before = await http.get("/api/contacts", params={"registeredBefore": "2026-06-01T00:00:00+00:00"})
        wrong = await http.get("/api/contacts", params={"registeredAfter": "yesterday"})
    assert [c["email"] for c in after.json()["items"]] == ["today@yopmail.com"]
    assert len(before.json()["items"]) == 2
    assert wrong.status_code == 400


async def test_rows_of_the_sync_table(engine, complete, sim):
    seed(sim, 1)
    await sync(engine, complete)
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(mirror_syncs)) == 1


async def test_the_service_syncs_a_complete_mirror_at_start_then_every_period(engine, complete, client, sim):
    seed(sim, 5)
    every = timedelta(hours=24)
    (first,) = await keep_mirrors(engine, complete, RULES_FILE, holder="p", every=every, now=utcnow())
    assert first.full and first.contacts_read == 5
    assert (
        await keep_mirrors(engine, complete, RULES_FILE, holder="p", every=every, now=utcnow()) == []
    )  # synced, fresh
    (later,) = await keep_mirrors(
        engine, complete, RULES_FILE, holder="p", every=every, now=utcnow() + timedelta(hours=25)
    )
    assert later.full
    # A learning account is never synced by the service.
    async with engine.begin() as conn:
        await conn.execute(mirror_syncs.delete())
    assert await keep_mirrors(engine, client, RULES_FILE, holder="p", every=every, now=utcnow()) == []


def test_sync_and_its_status_from_the_command_line(tmp_path, sim, sqlite_url):
    seed(sim, 3)
    env = {
        "DATABASE_URL": sqlite_url,
        "SYSTEME_API_KEY": SIM_KEY,
        "SYSTEME_API_URL": sim.url,
        "RULES_FILE": str(write_rules(tmp_path)),
        "MIRROR_MODE": "complete",
    }
    never = cli("sync", "--status", cwd=tmp_path, **env)
    assert never.returncode == 0, never.stderr
    assert "account default: mirror complete, 0 contacts known" in never.stdout and "last sync: never" in never.stdout
    done = cli("sync", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert "account default: full read" in done.stdout and "contacts read: 3" in done.stdout
    assert "requests: 4 in" in done.stdout  # the community's name, one page of contacts, one of each listing
    again = cli("sync", "--json", cwd=tmp_path, **env)
    assert json.loads(again.stdout)[0]["full"] is False
    status = cli("sync", "--status", cwd=tmp_path, **env)
    lines = status.stdout.splitlines()
    assert lines[0] == "account default: mirror complete, 3 contacts known"
    assert lines[1].startswith("  last sync: ") and " ago), " in lines[1] and "misses: 0" in status.stdout
    refused = cli("sync", "--account", "nope", cwd=tmp_path, **env)
    assert refused.returncode == 2 and "no account 'nope'" in refused.stderr


async def systeme_event(engine, clients, event_type: str, payload: dict, occurred_at=None) -> None:
    """A `systeme` source's webhook as ingest stores it (with Systeme.io's time of the event, when given), then
    planned as the planner plans it."""
    received = utcnow()
    [stored] = await record_events(
        engine, [NewEvent("systeme", event_type, f"sys-{uuid.uuid4().hex}", payload, {}, occurred_at, "v0", received)]
    )
    pending = [Unplanned(stored.event_id, "systeme", event_type, payload, occurred_at, received)]
    rules = RuleSet(parse_rules(RULES, path="r", env=rules_environment()))

    async def dispatch(runs, **_) -> None:
        return None

    assert await plan_events(engine, rules, pending, dispatch, approval_window=WINDOW, modes=clients.modes) == 1


async def test_a_tag_removed_in_systeme_is_added_again_by_the_next_purchase(engine, complete, sim):
    seed(sim, 3)
    await sync(engine, complete)
    await purchase(engine, complete, "lead1@yopmail.com")
    contact = sim.contact("lead1@yopmail.com")
    (tag,) = contact["tags"]
    sim.account.remove_contact_tag(contact["id"], tag["id"])  # by hand in Systeme.io, which sends its webhook
    await systeme_event(
        engine, complete, "CONTACT_TAG_REMOVED", {"contact": {"contact": {**contact, "tags": [tag]}}, "tag": tag}
    )
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "lead1@yopmail.com")).values()) == {"succeeded"}
    assert requests_made(sim, start) == [f"POST /api/contacts/{contact['id']}/tags"]
    assert sim.tag_names("lead1@yopmail.com") == ["Masterclass buyer"]


async def test_the_late_echo_of_our_tag_does_not_bring_it_back_after_the_refund(engine, complete, sim):
    seed(sim, 3)
    await sync(engine, complete)
    tagged_at = utcnow().replace(microsecond=0)  # Systeme.io dates its events in whole seconds
    await purchase(engine, complete, "lead2@yopmail.com")
    contact = sim.contact("lead2@yopmail.com")
    (tag,) = contact["tags"]
    refund = await plan_and_store(engine, stripe_refund("lead2@yopmail.com"), event_type="charge.refunded")
    assert set((await run(engine, complete, refund[0])).statuses.values()) == {"succeeded"}
    assert sim.tag_names("lead2@yopmail.com") == []
    # Systeme.io's webhook for the tag our purchase added arrives only now, after the refund took it away.
    added = {"contact": {**contact, "tags": [tag]}, "tag": tag}
    await systeme_event(engine, complete, "CONTACT_TAG_ADDED", added, occurred_at=tagged_at)
    # The buyer pays again: the mirror still knows the tag is gone, so it is added, not taken as "already tagged".
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "lead2@yopmail.com")).values()) == {"succeeded"}
    assert f"POST /api/contacts/{contact['id']}/tags" in requests_made(sim, start)
    assert sim.tag_names("lead2@yopmail.com") == ["Masterclass buyer"]


async def test_a_tag_webhook_dated_after_our_write_is_applied(engine, complete, sim):
    seed(sim, 3)
    await sync(engine, complete)
    await purchase(engine, complete, "lead0@yopmail.com")
    contact = sim.contact("lead0@yopmail.com")
    (tag,) = contact["tags"]
    sim.account.remove_contact_tag(contact["id"], tag["id"])  # by hand, a few seconds after our purchase
    removed = {"contact": {"contact": {**contact, "tags": []}}, "tag": tag}
    await systeme_event(engine, complete, "CONTACT_TAG_REMOVED", removed, occurred_at=utcnow() + timedelta(seconds=5))
    entry = await load_contact(engine, "default", "lead0@yopmail.com")
    assert entry is not None and entry[1]["tags"] == {}


async def test_a_contact_created_in_systeme_is_known_by_its_webhook_not_missed(engine, complete, sim):
    await sync(engine, complete)
    await purchase(engine, complete, "warm@yopmail.com")
    contact = sim.account.create_contact({"email": "optin@yopmail.com"})
    await systeme_event(engine, complete, "CONTACT_CREATED", {"contact": contact})
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "optin@yopmail.com")).values()) == {"succeeded"}
    made = requests_made(sim, start)
    assert "POST /api/contacts" not in made and made[0] == f"PATCH /api/contacts/{contact['id']}"  # its name filled
    synced = await load_sync(engine, "default")
    assert synced is not None and synced.misses == 0


def test_connect_registers_contact_and_tag_events_for_a_complete_mirror(tmp_path, sim):
    write_rules(tmp_path)
    env = {"SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    done = run_cli("connect", "--url", "https://flow.example.com", cwd=tmp_path, MIRROR_MODE="complete", **env)
    assert done.returncode == 0, done.stderr
    (hook,) = sim.account.webhooks.values()
    assert [s["event"] for s in hook["subscriptions"]] == [
        "CONTACT_CREATED",
        "CONTACT_TAG_ADDED",
        "CONTACT_TAG_REMOVED",
        "SALE_NEW",
    ]


async def test_the_service_syncs_at_start_and_shows_misses_in_its_metrics(make_settings, sqlite_url, sim):
    seed(sim, 4)
    engine = create_engine(sqlite_url)
    try:
        with running(make_settings(database_url=sqlite_url, mirror_mode="complete")) as url:

            async def synced() -> bool:
                return await load_sync(engine, "default") is not None

            await wait_for(synced)  # never synced: the first upkeep, at start, reads the account
            assert len(await load_entries(engine, "default")) == 4
            await count_miss(engine, "default")
            await count_miss(engine, "default")
            async with httpx.AsyncClient(base_url=url) as http:
                text = (await http.get("/metrics")).text
        assert 'systeme_flow_mirror_misses_total{account="default"} 2.0' in text
    finally:
        await engine.dispose()


async def test_a_new_account_mode_forgets_the_sync_with_the_mirror(engine, complete, sim):
    seed(sim, 2)
    await sync(engine, complete)
    changed = await note_modes(engine, {"default": "live:default:0badc0de"}, now=utcnow())
    assert changed and await load_sync(engine, "default") is None and await load_entries(engine, "default") == {}


async def test_a_contact_deleted_in_systeme_is_found_missing_and_created_again(engine, complete, sim):
    leads = seed(sim, 3)
    await sync(engine, complete)
    await purchase(engine, complete, "warm@yopmail.com")
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        assert (await http.delete(f"/api/contacts/{leads[0]['id']}")).status_code == 204
    start = len(sim.account.calls)
    assert set((await purchase(engine, complete, "lead0@yopmail.com")).values()) == {"succeeded"}
    again = sim.contact("lead0@yopmail.com")["id"]
    assert again != leads[0]["id"]
    # The write built from the mirror answers 404: the entry (and the tag's cached id) is dropped, and the contact
    # is created at once, no find first.
    assert requests_made(sim, start) == [
        f"POST /api/contacts/{leads[0]['id']}/tags",
        "POST /api/contacts",
        "GET /api/tags",
        f"POST /api/contacts/{again}/tags",
        "POST /api/school/courses/101/enrollments",
        "POST /api/community/communities/7/memberships",
    ]
    synced = await load_sync(engine, "default")
    assert synced is not None and synced.misses == 0


async def test_a_refund_for_an_email_the_mirror_does_not_know_sends_nothing(engine, complete, sim):
    seed(sim, 3)
    await sync(engine, complete)
    start = len(sim.account.calls)
    ids = await plan_and_store(engine, stripe_refund("erased@yopmail.com"), event_type="charge.refunded")
    assert set((await run(engine, complete, ids[0])).statuses.values()) == {"succeeded"}
    assert requests_made(sim, start) == [] and sim.contact("erased@yopmail.com") is None
    assert set((await purchase(engine, complete, "erased@yopmail.com")).values()) == {"succeeded"}
    assert requests_made(sim, start)[0] == "POST /api/contacts"
