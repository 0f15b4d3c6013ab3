"""The simulator's contact fields, webhooks and Maton connections answer as documented (client-independent)."""

from __future__ import annotations

import httpx

from app.systeme.client import account_refused
from tests.conftest import SIM_KEY

KEY = {"X-API-Key": SIM_KEY}
BEARER = {"Authorization": f"Bearer {SIM_KEY}"}
HOOK = {
    "name": "n",
    "url": "https://h.example/hooks/s",
    "secret": "s",
    "subscriptions": [{"event": "SALE_NEW", "schemaVersion": 2}],
}


async def test_contact_fields_list_and_create_as_documented(sim):
    async with httpx.AsyncClient(base_url=sim.url, headers=KEY) as http:
        listed = (await http.get("/api/contact_fields", params={"limit": 100, "order": "asc"})).json()
        created = await http.post("/api/contact_fields", json={"slug": "shoe_size", "fieldName": "Shoe size"})
        taken = await http.post("/api/contact_fields", json={"slug": "shoe_size", "fieldName": "Again"})
        invalid = await http.post("/api/contact_fields", json={"slug": "shoe-size", "fieldName": "Shoe size"})
        nameless = await http.post("/api/contact_fields", json={"slug": "size"})
        page = (await http.get("/api/contact_fields", params={"limit": 10, "order": "asc"})).json()
        rest = (
            await http.get("/api/contact_fields", params={"limit": 10, "order": "asc", "startingAfter": "country"})
        ).json()
    assert {"slug": "first_name", "fieldName": "First name"} in listed["items"] and listed["hasMore"] is False
    assert (created.status_code, created.json()) == (201, {"slug": "shoe_size", "fieldName": "Shoe size"})
    assert taken.status_code == 422 and taken.json()["violations"][0]["propertyPath"] == "slug"
    assert invalid.status_code == 422 and nameless.status_code == 422
    assert [f["slug"] for f in page["items"]][-1] == "shoe_size" and not page["hasMore"]
    assert [f["slug"] for f in rest["items"]] == ["shoe_size"]


async def test_webhooks_crud_as_documented(sim):
    async with httpx.AsyncClient(base_url=sim.url, headers=KEY) as http:
        created = await http.post("/api/webhooks", json=HOOK)
        ident = created.json()["id"]
        fetched = (await http.get(f"/api/webhooks/{ident}")).json()
        merge = {"Content-Type": "application/merge-patch+json"}
        moved = await http.patch(f"/api/webhooks/{ident}", json={"url": "https://elsewhere.example"}, headers=merge)
        plain = await http.patch(f"/api/webhooks/{ident}", json={"active": False})
        patched = await http.patch(
            f"/api/webhooks/{ident}", json={"active": False, "subscriptions": ["SALE_CANCELED"]}, headers=merge
        )
        bad = [
            await http.post("/api/webhooks", json={**HOOK, "secret": ""}),
            await http.post("/api/webhooks", json={**HOOK, "url": "not a url"}),
            await http.post(
                "/api/webhooks", json={**HOOK, "subscriptions": [{"event": "SALE_REFUNDED", "schemaVersion": 2}]}
            ),
            await http.post("/api/webhooks", json={**HOOK, "subscriptions": []}),
        ]
        deleted = await http.delete(f"/api/webhooks/{ident}")
        again = await http.delete(f"/api/webhooks/{ident}")
        listed = (await http.get("/api/webhooks")).json()
    assert created.status_code == 201 and "secret" not in created.json() and "secret" not in fetched
    assert fetched["subscriptions"][0]["event"] == "SALE_NEW" and fetched["subscriptions"][0]["disabledAt"] is None
    assert moved.status_code == 400 and "url" in moved.json()["detail"]  # the URL cannot be changed
    assert plain.status_code == 415
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert [(s["event"], s["schemaVersion"]) for s in patched.json()["subscriptions"]] == [("SALE_CANCELED", 1)]
    assert [r.status_code for r in bad] == [422, 422, 422, 422]
    assert (deleted.status_code, again.status_code) == (204, 404)
    assert listed == {"items": [], "hasMore": False}


async def test_maton_connections_and_the_proxy_s_connection_check(sim):
    async with httpx.AsyncClient(base_url=sim.url) as http:
        anonymous = await http.get("/connections")
        created = (await http.post("/connections", json={"app": "systeme"}, headers=BEARER)).json()["connection"]
        ident = created["connection_id"]
        pending = (
            await http.get("/connections", params={"app": "systeme", "status": "PENDING"}, headers=BEARER)
        ).json()
        active = (await http.get("/connections", params={"app": "systeme", "status": "ACTIVE"}, headers=BEARER)).json()
        refused = await http.get("/api/tags", headers={**BEARER, "Maton-Connection": ident})
        await http.get(created["url"])
        accepted = await http.get("/api/tags", headers={**BEARER, "Maton-Connection": ident})
        failed = await http.post(f"/_sim/connections/{ident}", json={"status": "FAILED"})
        one = (await http.get(f"/connections/{ident}", headers=BEARER)).json()["connection"]
        deleted = await http.delete(f"/connections/{ident}", headers=BEARER)
        missing = await http.get(f"/connections/{ident}", headers=BEARER)
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "Invalid API key"}
    assert created["status"] == "PENDING" and created["app"] == "systeme" and created["url"].startswith(sim.url)
    assert [c["connection_id"] for c in pending["connections"]] == [ident] and active == {"connections": []}
    assert refused.status_code == 400 and account_refused(refused, maton=True)  # held, not failed
    assert accepted.status_code == 200
    assert failed.status_code == 200 and one["status"] == "FAILED"
    assert (deleted.status_code, missing.status_code) == (200, 404)
