"""Fixtures of the drift-check tests (the engine on each database is tests/conftest.py's): the simulator's
client, and hands on the account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.accounts.registry import AccountClients
from app.errors import NotFound
from app.reconcile.service import Report, reconcile
from app.store.models import utcnow
from app.systeme.client import SystemeClient
from tests.conftest import SIM_KEY
from tests.factories import stripe_checkout, stripe_refund
from tests.flows import plan_and_store, run


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    """Explicitly lenient: these checks read an account right after its purchases, and are about drift, not about
    the seconds before an accepted (202) membership is listed; that delay has its own tests in
    tests/actions/test_strict_api.py."""
    sim.account.membership_delay = 0.0


@pytest.fixture
async def client(make_settings):
    """The account clients a worker builds, of the simulator's one account (`default`): what runs take."""
    clients = AccountClients(make_settings(), None)
    yield clients
    await clients.aclose()


async def check(
    engine,
    client: AccountClients | SystemeClient,
    *,
    since: timedelta = timedelta(days=30),
    rule: str | None = None,
    **kw: Any,
) -> Report:
    def client_for(account: str) -> SystemeClient:
        if account != "default":
            raise NotFound(f"no client for account {account!r} yet")
        chosen = client.client(account) if isinstance(client, AccountClients) else client
        assert chosen is not None
        return chosen

    return await reconcile(engine, client_for=client_for, since=utcnow() - since, rule=rule, **kw)


async def purchase(engine, client, email: str) -> list[str]:
    ids = await plan_and_store(engine, stripe_checkout(email), event_type="checkout.session.completed")
    assert set((await run(engine, client, ids[0])).statuses.values()) == {"succeeded"}
    return ids


async def refund(engine, client, email: str) -> list[str]:
    ids = await plan_and_store(engine, stripe_refund(email), event_type="charge.refunded")
    assert set((await run(engine, client, ids[0])).statuses.values()) == {"succeeded"}
    return ids


class Hands:
    """Changes made in the account by hand, through the simulator's public API, as a person in Systeme.io would."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.http = httpx.AsyncClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY})

    def cid(self, email: str) -> int:
        return int(self.sim.contact(email)["id"])

    async def untag(self, email: str, name: str) -> None:
        tag = next(t for t in self.sim.contact(email)["tags"] if t["name"] == name)
        assert (await self.http.delete(f"/api/contacts/{self.cid(email)}/tags/{tag['id']}")).status_code == 204

    async def unenroll(self, email: str, course: int = 101) -> None:
        cid = self.cid(email)
        (enrollment,) = [
            e
            for e in self.sim.account.enrollments.values()
            if e["contact"]["id"] == cid and e["course"]["id"] == course
        ]
        assert (await self.http.delete(f"/api/school/enrollments/{enrollment['id']}")).status_code == 204

    async def enroll(self, email: str, course: int = 101) -> None:
        body = {"contactId": self.cid(email), "accessType": "full_access"}
        assert (await self.http.post(f"/api/school/courses/{course}/enrollments", json=body)).status_code == 201

    async def delete_contact(self, email: str) -> None:
        assert (await self.http.delete(f"/api/contacts/{self.cid(email)}")).status_code == 204


@pytest.fixture
async def hands(sim):
    hands = Hands(sim)
    yield hands
    await hands.http.aclose()
