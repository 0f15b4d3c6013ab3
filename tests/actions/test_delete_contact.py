"""`delete_contact`: erases a contact in Systeme.io, once an operator approves it, and drops it from the mirror."""

from __future__ import annotations

import httpx
import pytest

from app.errors import RulesError
from app.preview.calls import describe
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.contacts import load_contact
from app.store.models import utcnow
from app.store.operator import approve
from app.ui.rules_view import describe_action
from tests.conftest import SIM_KEY
from tests.factories import RULES, stripe_checkout
from tests.flows import calls_of, plan_and_store, row, run

ERASE_RULES = (
    RULES
    + """
  - id: erase-on-request
    on: stripe/customer.deleted
    contact: { email: "{{ event.email }}" }
    actions:
      - delete_contact:
  - id: erase-test-buyer
    on: stripe/customer.updated
    contact: { email: "{{ event.email }}" }
    unless_tagged: Keep
    actions:
      - delete_contact: { approval: auto }
"""
)


async def test_the_simulator_deletes_contacts_as_the_reference_says(sim):
    ada = sim.account.create_contact({"email": "ada@yopmail.com"})
    sim.account.enroll(101, {"contactId": ada["id"], "accessType": "full_access"})
    async with httpx.AsyncClient(base_url=sim.url) as stranger:
        anonymous = await stranger.delete(f"/api/contacts/{ada['id']}")
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        deleted = await http.delete(f"/api/contacts/{ada['id']}")
        again = await http.delete(f"/api/contacts/{ada['id']}")
        unknown = await http.delete("/api/contacts/999999")
        not_an_id = await http.delete("/api/contacts/ada")
        listed = (await http.get("/api/contacts", params={"email": "ada@yopmail.com"})).json()
        enrolled = (await http.get("/api/school/enrollments", params={"contact": ada["id"]})).json()
    assert anonymous.status_code == 401
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert again.status_code == 404 and unknown.status_code == 404 and not_an_id.status_code == 404
    assert listed["items"] == [] and enrolled["items"] == []


async def test_delete_contact_waits_for_approval_then_erases_and_forgets_the_mirror(engine, client, sim):
    (grant, *_) = await plan_and_store(
        engine, stripe_checkout("gdpr@yopmail.com"), event_type="checkout.session.completed"
    )
    await run(engine, client, grant)
    contact_id = sim.contact("gdpr@yopmail.com")["id"]
    assert await load_contact(engine, "default", "gdpr@yopmail.com") is not None

    (erase,) = await plan_and_store(
        engine, {"email": "gdpr@yopmail.com"}, event_type="customer.deleted", rules=ERASE_RULES
    )
    assert (await row(engine, erase)).status == "awaiting_approval"  # erasing someone is confirmed by default
    assert (await run(engine, client, erase)).status == "not_claimed"
    assert sim.contact("gdpr@yopmail.com") is not None
    await approve(engine, erase, by="ops", now=utcnow())
    assert (await run(engine, client, erase)).statuses == {erase: "succeeded"}
    done = await row(engine, erase)
    assert done.outcome == f"contact {contact_id} deleted in Systeme.io" and done.decided_by == "ops"
    assert sim.contact("gdpr@yopmail.com") is None
    assert await load_contact(engine, "default", "gdpr@yopmail.com") is None
    calls = [(c.method, c.path, c.status_code) for c in await calls_of(engine, erase)]
    assert calls[0][1].startswith("/api/contacts?email=gdpr%40yopmail.com") and calls[-1] == (
        "DELETE",
        f"/api/contacts/{contact_id}",
        204,
    )


async def test_a_contact_that_is_not_there_is_erased_already_and_never_created(engine, client, sim):
    (erase,) = await plan_and_store(
        engine, {"email": "never@yopmail.com"}, event_type="customer.updated", rules=ERASE_RULES
    )
    assert (await run(engine, client, erase)).statuses == {erase: "succeeded"}  # approval: auto in this rule
    assert (await row(engine, erase)).outcome == "not found in Systeme.io: nothing to erase"
    assert sim.writes() == [] and sim.contact("never@yopmail.com") is None


async def test_a_tag_condition_is_read_without_creating_the_contact(engine, client, sim):
    kept = sim.account.create_contact({"email": "keep@yopmail.com"})
    tag = sim.account.create_tag({"name": "Keep"})
    sim.account.add_contact_tag(kept["id"], {"tagId": tag["id"]})
    (erase,) = await plan_and_store(
        engine, {"email": "keep@yopmail.com"}, event_type="customer.updated", rules=ERASE_RULES
    )
    assert (await run(engine, client, erase)).statuses == {erase: "skipped"}
    assert sim.contact("keep@yopmail.com") is not None and sim.writes() == []


def test_delete_contact_in_the_rules_file():
    rules = RuleSet(parse_rules(ERASE_RULES, path="r", env={}))
    (outcome,) = rules.plan(source="stripe", event_type="customer.deleted", payload={"email": "A@yopmail.com"})
    (action,) = outcome.actions
    assert (action.kind, action.params, action.approval) == ("delete_contact", {}, "required")
    assert [(c.method, c.path) for c in describe(action)] == [
        ("GET", "/api/contacts?email=a@yopmail.com"),
        ("DELETE", "/api/contacts/{contact}"),
    ]
    # The dashboard's rules page says so as the engine does.
    erase = next(r for r in rules.rules if r.id == "erase-on-request")
    assert describe_action(erase, erase.actions[0]) == "delete_contact · approval required"
    with pytest.raises(RulesError) as caught:
        parse_rules(
            ERASE_RULES.replace("- delete_contact:\n", "- delete_contact: { everything: true }\n"), path="r", env={}
        )
    assert any("unknown key `everything`" in p for p in caught.value.problems), caught.value.problems
    with pytest.raises(RulesError) as caught:
        parse_rules(ERASE_RULES.replace("- delete_contact:\n", "- delete_contact: yes\n"), path="r", env={})
    assert any(
        "`delete_contact` takes no parameters: write `- delete_contact:` alone" in p for p in caught.value.problems
    )
    no_contact = ERASE_RULES.replace(
        '    contact: { email: "{{ event.email }}" }\n    actions:\n      - delete_contact:',
        "    actions:\n      - delete_contact:",
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(no_contact, path="r", env={})
    assert any("delete_contact act on a contact" in p for p in caught.value.problems), caught.value.problems


async def test_the_persons_contact_is_found_whatever_the_case_and_the_search_filter(engine, client, sim):
    # A search that does not filter by email: the person's contact (in capitals) is not the first one answered.
    sim.account.email_filter = "ignored"
    other = sim.account.create_contact({"email": "someone.else@yopmail.com"})
    theirs = sim.account.create_contact({"email": "Capital.Person@yopmail.com"})
    (erase,) = await plan_and_store(
        engine, {"email": "capital.person@yopmail.com"}, event_type="customer.updated", rules=ERASE_RULES
    )
    assert (await run(engine, client, erase)).statuses == {erase: "succeeded"}
    assert (await row(engine, erase)).outcome == f"contact {theirs['id']} deleted in Systeme.io"
    assert sim.contact("capital.person@yopmail.com") is None
    assert sim.contact("someone.else@yopmail.com") == other

    # Only other people answered: that is no proof the person has no contact, so the erasure fails.
    (again,) = await plan_and_store(
        engine, {"email": "capital.person@yopmail.com"}, event_type="customer.updated", rules=ERASE_RULES
    )
    assert (await run(engine, client, again)).statuses == {again: "failed"}
    failed = await row(engine, again)
    assert failed.last_error.startswith("could not confirm that capital.person@yopmail.com has no contact")
    assert sim.contact("someone.else@yopmail.com") == other


async def test_a_tag_condition_reads_the_persons_contact_not_the_first_answered(engine, client, sim):
    # A search that does not filter by email answers someone else first: their tags are not the person's.
    sim.account.email_filter = "ignored"
    sim.account.create_contact({"email": "first.answered@yopmail.com"})
    kept = sim.account.create_contact({"email": "kept.person@yopmail.com"})
    tag = sim.account.create_tag({"name": "Keep"})
    sim.account.add_contact_tag(kept["id"], {"tagId": tag["id"]})
    (erase,) = await plan_and_store(
        engine, {"email": "kept.person@yopmail.com"}, event_type="customer.updated", rules=ERASE_RULES
    )
    assert (await run(engine, client, erase)).statuses == {erase: "skipped"}
    assert "(unless_tagged)" in (await row(engine, erase)).outcome
    assert sim.contact("kept.person@yopmail.com") is not None and sim.writes() == []
