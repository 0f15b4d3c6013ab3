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


async def test_seed_adds_contacts_without_spending_the_quota(sim):
    sim.account.rate_limit = 1
    async with httpx.AsyncClient(base_url=sim.url) as http:
        ok = await http.post("/_sim/seed", json={"contacts": [{"email": f"lead{n}@yopmail.com"} for n in range(3)]})
        refused = await http.post("/_sim/seed", json={"contacts": [{"email": "not an email"}]})
    assert ok.status_code == 200 and sim.contact("lead2@yopmail.com") is not None
    assert refused.status_code == 400 and "email" in refused.json()["error"]
    assert sim.account.calls == [] and sim.account.throttled == 0


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


async def test_strict_controls_forbid_delay_payments_and_pager(sim):
    owner = sim.account.create_contact({"email": "ada@lovelace-school.org"})
    sim.simulator.seed(subscriptions=[{"id": 77, "contactId": owner["id"]}])
    key = {"X-API-Key": sim.simulator.api_key or ""}
    async with httpx.AsyncClient(base_url=sim.url, headers=key) as http:
        assert (await http.post("/_sim/forbid", json={"community": 7})).json() == {
            "forbidden": ["/api/community/communities/7"]
        }
        join = await http.post("/api/community/communities/7/memberships", json={"contactId": owner["id"]})
        assert join.status_code == 403 and join.json()["detail"] == "Access Denied."
        assert (await http.get("/api/community/communities")).status_code == 200  # the list is not that record
        await http.post("/_sim/forbid", json={"clear": True})

        await http.post("/_sim/memberships", json={"delay": 3600})
        join = await http.post("/api/community/communities/7/memberships", json={"contactId": owner["id"]})
        assert (join.status_code, join.content) == (202, b"")
        listed = await http.get("/api/community/memberships", params={"contact": owner["id"]})
        assert listed.json()["items"] == [] and len(sim.account.memberships) == 1  # accepted, not listed yet

        page = await http.get("/api/payment/subscriptions", params={"contact": owner["id"], "limit": 100})
        assert page.status_code == 422 and page.json()["violations"][0]["propertyPath"] == "pagination.limit"
        assert (await http.get("/api/payment/subscriptions", params={"contact": owner["id"]})).status_code == 200
        ended = await http.post("/api/payment/subscriptions/77/cancel", json={"cancel": "WhenBillingPeriodEnds"})
        assert ended.status_code == 204
        assert sim.account.subscriptions[77]["status"] == "active" and sim.account.subscriptions[77]["cancelledAt"]
        again = await http.post("/api/payment/subscriptions/77/cancel", json={"cancel": "WhenBillingPeriodEnds"})
        assert again.status_code == 422
        await http.post("/_sim/payments", json={"enabled": False})
        assert (await http.get("/api/payment/subscriptions", params={"contact": owner["id"]})).status_code == 404

        for n in range(15):
            sim.account.create_tag({"name": f"t{n}"})
        await http.post("/_sim/pager", json={"mode": "ignore_cursor"})
        first = (await http.get("/api/tags", params={"limit": 10})).json()["items"]
        after = first[-1]["id"]
        assert (await http.get("/api/tags", params={"limit": 10, "startingAfter": after})).json()["items"] == first


async def test_contact_values_are_held_to_the_reference(sim):
    acc = sim.account
    for body, path in [
        ({"email": "a@lovelace-school.org", "locale": "ja"}, "locale"),
        ({"email": "a@lovelace-school.org", "fields": [{"slug": "nickname", "value": "A"}]}, "fields[0].slug"),
        ({"email": "a@lovelace-school.org", "fields": [{"slug": "city", "value": "x" * 256}]}, "fields[0].value"),
    ]:
        async with httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": sim.simulator.api_key or ""}) as http:
            answer = await http.post("/api/contacts", json=body)
        assert answer.status_code == 422 and answer.json()["violations"][0]["propertyPath"] == path
    assert acc.contacts == {}
    assert acc.create_contact({"email": "a@lovelace-school.org", "locale": "jp"})["locale"] == "jp"
