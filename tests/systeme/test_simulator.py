"""The simulator's trial controls (the Systeme.io API itself is exercised by every other test)."""

from __future__ import annotations

import httpx


async def test_seed_names_a_subscriptions_contact_by_email(sim):
    owner = sim.account.create_contact({"email": "ada@example.com"})
    async with httpx.AsyncClient(base_url=sim.url) as http:
        ok = await http.post("/_sim/seed", json={"subscriptions": [{"id": 4242, "contactEmail": "Ada@example.com"}]})
        missing = await http.post("/_sim/seed", json={"subscriptions": [{"id": 1, "contactEmail": "no@example.com"}]})
    assert ok.status_code == 200 and sim.account.subscriptions[4242]["contactId"] == owner["id"]
    assert missing.status_code == 400 and "no contact with that contactEmail" in missing.json()["error"]
    assert 1 not in sim.account.subscriptions
