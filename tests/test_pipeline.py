"""End to end over real HTTP: signed events in, effects in the simulator, in embedded mode on both stores."""

from __future__ import annotations

import json

import httpx

from tests.conftest import operator, planned, running, wait_for
from tests.factories import stripe_checkout, stripe_headers, stripe_refund


async def _post_stripe(url: str, event: dict) -> httpx.Response:
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))


async def _actions_done(url: str, event_id: str) -> list[dict]:
    return list((await planned(url, event_id))["actions"])


async def test_purchase_then_refund_grants_then_revokes(make_settings, database_url, sim):
    with running(make_settings(database_url=database_url)) as url:
        answer = await _post_stripe(url, stripe_checkout("ada@yopmail.com"))
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["event_id"]
        assert answer.json()["duplicate"] is False

        async def settled() -> bool:
            return all(a["status"] == "succeeded" for a in await _actions_done(url, event_id))

        await wait_for(settled)
        contact = sim.contact("ada@yopmail.com")
        assert contact is not None
        assert {"slug": "first_name", "value": "Ada Lovelace", "fieldName": "First name"} in contact["fields"]
        assert sim.tag_names("ada@yopmail.com") == ["Masterclass buyer"]
        assert [e["course"]["id"] for e in sim.account.enrollments.values()] == [101]
        assert [m["community"]["id"] for m in sim.account.memberships.values()] == [7]
        # Created asynchronously (202): the refund comes once the membership is listed, as a buyer's refund would.
        await wait_for(lambda: bool(sim.account.listed_memberships()))

        refund = await _post_stripe(url, stripe_refund("ada@yopmail.com"))
        assert refund.status_code == 202
        refund_id = refund.json()["event_id"]

        async def revoked() -> bool:
            return all(a["status"] == "succeeded" for a in await _actions_done(url, refund_id))

        await wait_for(revoked)
        assert sim.tag_names("ada@yopmail.com") == []
        assert sim.account.enrollments == {}
        assert sim.account.memberships == {}


async def test_redelivery_is_answered_200_and_runs_nothing_twice(make_settings, database_url, sim):
    event = stripe_checkout("bob@yopmail.com")
    with running(make_settings(database_url=database_url)) as url:
        first = await _post_stripe(url, event)
        assert first.status_code == 202
        await wait_for(lambda: len(sim.account.enrollments) == 1)
        again = await _post_stripe(url, event)
        assert again.status_code == 200
        assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
        async with operator(url) as http:
            listed = (await http.get("/v1/events")).json()
        assert [e["id"] for e in listed["items"]] == [first.json()["event_id"]]
    assert len(sim.account.enrollments) == 1
    assert len(sim.account.memberships) == 1
    # Actions of one event may race to create the contact; only one creation may succeed.
    assert len([c for c in sim.writes() if c["path"] == "/api/contacts" and c["status"] == 201]) == 1
    assert len(sim.account.contacts) == 1
