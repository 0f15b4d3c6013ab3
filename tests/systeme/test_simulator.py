"""The simulator's trial controls (the Systeme.io API itself is exercised by every other test)."""

from __future__ import annotations

import httpx

from tests.conftest import SIM_KEY


async def test_seed_names_a_subscriptions_contact_by_email(sim):
    owner = sim.account.create_contact({"email": "ada@yopmail.com"})
    async with httpx.AsyncClient(base_url=sim.url) as http:
        ok = await http.post("/_sim/seed", json={"subscriptions": [{"id": 4242, "contactEmail": "Ada@yopmail.com"}]})
        missing = await http.post("/_sim/seed", json={"subscriptions": [{"id": 1, "contactEmail": "no@yopmail.com"}]})
    assert ok.status_code == 200 and sim.account.subscriptions[4242]["contactId"] == owner["id"]
    assert missing.status_code == 400 and "no contact with that contactEmail" in missing.json()["error"]
    assert 1 not in sim.account.subscriptions


async def test_addresses_at_reserved_domains_are_refused_as_having_no_mail_server(sim):
    # The real API refuses a domain with no mail server; RFC 2606's reserved names never have one.
    # ("a@" + "example.com" is written in two parts so that no search-and-replace of test addresses makes it real.)
    reserved = [
        "a@" + "example.com",
        "a@shop.example.org",
        "a@EXAMPLE.NET",
        "a@host.test",
        "a@x.invalid",
        "a@x.example",
    ]
    reserved.append("a@printer.localhost")
    async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}) as http:
        refused = [await http.post("/api/contacts", json={"email": email}) for email in reserved]
        kept = await http.post("/api/contacts", json={"email": "a@myexample.com"})
    assert [r.status_code for r in refused] == [422] * len(reserved)
    assert all("no mail server" in r.json()["violations"][0]["message"] for r in refused)
    assert kept.status_code == 201, kept.text
