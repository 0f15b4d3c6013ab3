"""The account is part of the system: a refused key holds it (nothing fails), several accounts each their own."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from app.accounts.holds import check_accounts, probe_holds
from app.accounts.registry import AccountClients
from app.simulator import Simulator
from app.store.db import create_engine
from app.store.holds import holds
from app.store.models import account_holds, utcnow
from tests.conftest import ADMIN, SIM_KEY, operator, post_stripe, running, wait_for
from tests.factories import RULES, stripe_checkout, write_rules
from tests.flows import event_actions, settled
from tests.servers import ServerThread, alert_receiver


async def readiness(url: str) -> dict:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/readyz")
    assert answer.status_code == 200  # ingest keeps storing events while an account is held
    return dict(answer.json())


async def probe_falls_due(database_url: str) -> list[str]:
    """Time passes for the held accounts: their next probe is due now. The accounts moved."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            moved = await conn.execute(
                account_holds.update().values(next_probe_at=utcnow()).returning(account_holds.c.account)
            )
            return sorted(moved.scalars())
    finally:
        await engine.dispose()


def refused(sim) -> int:
    return sum(1 for c in sim.account.calls if c["status"] == 401)


async def test_a_revoked_key_holds_the_account_then_everything_resumes_by_itself(make_settings, sqlite_url, sim):
    with alert_receiver() as (alert_url, alerts):
        settings = make_settings(database_url=sqlite_url, alert_webhook_url=alert_url)
        with running(settings) as url:
            await settled(url, await post_stripe(url, stripe_checkout("before@yopmail.com")))
            sim.simulator.api_key = "the-new-key"  # the seller revoked ours in Systeme.io
            backlog = [await post_stripe(url, stripe_checkout(f"buyer{n}@yopmail.com")) for n in range(6)]

            async def held() -> bool:
                return (await readiness(url)).get("account", {}).get("state") == "held"

            await wait_for(held)
            state = await readiness(url)
            assert state["ready"] is True and "Invalid API key" in state["account"]["reason"]
            await asyncio.sleep(3)  # a backlog waiting on a held account asks nothing more
            actions = [a for event in backlog for a in await event_actions(url, event)]
            assert {a["status"] for a in actions} == {"pending"}
            assert all(a["attempts"] == 0 for a in actions)  # no attempt spent: none can fail or die of it
            assert refused(sim) <= settings.embedded_concurrency  # the runs in flight when it happened, no more
            async with operator(url) as http:
                page = (await http.get("/ui")).text
                metrics = (await http.get("/metrics")).text
            assert "is held" in page and "Invalid API key" in page
            assert "by themselves" not in page and "set a working SYSTEME_API_KEY" in page  # not without a fix
            assert 'systeme_flow_account_held{account="default"} 1.0' in metrics

            sim.simulator.api_key = SIM_KEY  # the seller pasted the right key into Systeme.io's side, say
            # The next probe (30 s after the hold began, at first) falls due now: moved in the database, the
            # clock the probes follow, instead of waited for on the wall clock.
            assert await probe_falls_due(settings.database_url) == ["default"]
            await settled(url, *backlog)  # that one probe passes and everything resumes
            actions = [a for event in backlog for a in await event_actions(url, event)]
            assert {a["status"] for a in actions} == {"succeeded"}
            assert (await readiness(url))["account"] == {"state": "ok"}
            await wait_for(lambda: len(alerts) >= 2)
    assert len(alerts) == 2
    assert "is held" in alerts[0] and "Invalid API key" in alerts[0] and "works again" in alerts[1]
    assert "SYSTEME_API_KEY" in alerts[0] and "by themselves" not in alerts[0]
    assert refused(sim) <= settings.embedded_concurrency + 1  # plus the one probe that still failed, at most


async def test_a_bad_key_at_start_starts_the_service_held_not_crashed(make_settings, sqlite_url, sim):
    with running(make_settings(database_url=sqlite_url, systeme_api_key="not-the-key")) as url:
        state = await readiness(url)
        assert state["account"]["state"] == "held" and "Invalid API key" in state["account"]["reason"]
        assert len(sim.account.calls) == 1  # one GET to check the key


async def test_a_403_on_the_start_check_itself_holds_the_account(make_settings, sqlite_url, sim):
    # A 403 on one record fails that step; a 403 on the cheap read used as the probe is the account's.
    sim.account.forbidden.add("/api/tags")
    with running(make_settings(database_url=sqlite_url)) as url:
        state = await readiness(url)
        assert state["account"]["state"] == "held" and "Access Denied." in state["account"]["reason"]


async def test_several_active_maton_connections_none_named_hold_the_account_at_start(make_settings, database_url, sim):
    control = sim.simulator.connections
    ids = [control.create("systeme", sim.url)["connection_id"] for _ in range(2)]
    for ident in ids:
        control.set_status(ident, "ACTIVE")
    maton = {"systeme_api_key": None, "maton_api_key": SIM_KEY, "maton_control_url": sim.url}
    with running(make_settings(database_url=database_url, **maton)) as url:
        state = await readiness(url)
        assert state["account"]["state"] == "held"
        reason = state["account"]["reason"]
        assert "2 ACTIVE Systeme.io connections" in reason and "MATON_CONNECTION" in reason
        assert all(ident in reason for ident in ids)
        assert sim.account.calls == []  # nothing went to whichever account Maton would have picked
    with running(make_settings(database_url=database_url, maton_connection=ids[1], **maton)) as url:
        assert (await readiness(url))["account"] == {"state": "ok"}  # one named: the hold ends at start


async def test_a_probe_keeps_the_ambiguous_account_held_until_one_connection_is_left(make_settings, database_url, sim):
    control = sim.simulator.connections
    ids = [control.create("systeme", sim.url)["connection_id"] for _ in range(2)]
    for ident in ids:
        control.set_status(ident, "ACTIVE")
    settings = make_settings(
        database_url=database_url, systeme_api_key=None, maton_api_key=SIM_KEY, maton_control_url=sim.url
    )
    engine, clients = create_engine(database_url), AccountClients(settings, None)

    async def probe_due() -> list[str]:
        async with engine.begin() as conn:
            await conn.execute(account_holds.update().values(next_probe_at=utcnow() - timedelta(seconds=1)))
        return await probe_holds(engine, clients, settings)

    try:
        await check_accounts(engine, clients, settings)
        assert [h.account for h in await holds(engine)] == ["default"]
        # A GET would go through (to whichever account Maton picks): the probe asks Maton, not the account.
        assert await probe_due() == [] and sim.account.calls == []
        control.set_status(ids[1], "FAILED")
        assert await probe_due() == ["default"] and await holds(engine) == []
    finally:
        await clients.aclose()
        await engine.dispose()


TWO_ACCOUNTS = (
    RULES.replace(
        "version: 1\n",
        """version: 1
accounts:
  school:   { api_key: "school-key", api_url: "SCHOOL_URL" }
  coaching: { api_key: "coaching-key", api_url: "COACHING_URL" }
""",
    ).replace(
        "  - id: masterclass-purchase\n    on: [stripe/checkout.session.completed]\n",
        "  - id: masterclass-purchase\n    account: school\n    on: [stripe/checkout.session.completed]\n",
    )
    + """
  - id: coaching-call
    account: coaching
    on: stripe/checkout.session.completed
    if: event.data.object.metadata.product == "coaching"
    contact: { email: "{{ event.data.object.customer_details.email }}" }
    actions: [ { tag: Coaching client } ]
"""
)


async def test_two_accounts_are_routed_by_rule_each_with_its_own_quota_and_hold(make_settings, sqlite_url, tmp_path):
    school, coaching = Simulator(api_key="school-key"), Simulator(api_key="coaching-key")
    school.seed(courses=[{"id": 101, "name": "Masterclass"}], communities=[{"id": 7, "name": "Insiders"}])
    with ServerThread(school.app) as school_server, ServerThread(coaching.app) as coaching_server:
        text = TWO_ACCOUNTS.replace("SCHOOL_URL", school_server.url).replace("COACHING_URL", coaching_server.url)
        (tmp_path / "accounts").mkdir()
        rules = write_rules(tmp_path / "accounts", text)
        settings = make_settings(database_url=sqlite_url, rules_file=str(rules))
        with running(settings) as url:
            sale = stripe_checkout("both@yopmail.com")
            sale["data"]["object"]["metadata"]["product"] = "coaching"
            first = await post_stripe(url, sale)
            await settled(url, first)
            routed = sorted((a["rule_id"], a["kind"], a["account"]) for a in await event_actions(url, first))
            school.api_key = "revoked"  # one account's key stops working; the other goes on
            second = stripe_checkout("next@yopmail.com")
            second["data"]["object"]["metadata"]["product"] = "coaching"
            later = await post_stripe(url, second)

            async def coaching_done_and_school_tried() -> bool:
                # The two accounts' runs go in parallel: the coaching one may end before the school's has met its
                # revoked key, so wait for both.
                coached = any(c.get("kind") == "tag" and c["account"] == "coaching" and c["status"] == "succeeded"
                              for c in await event_actions(url, later))  # fmt: skip
                return coached and (await readiness(url))["accounts"]["school"]["state"] == "held"

            await wait_for(coaching_done_and_school_tried)
            state = await readiness(url)
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
                listed = (await http.get("/v1/actions", params={"status": "pending"})).json()["items"]
    assert routed == [
        ("coaching-call", "tag", "coaching"),
        ("masterclass-purchase", "add_to_community", "school"),
        ("masterclass-purchase", "enroll", "school"),
        ("masterclass-purchase", "tag", "school"),
    ]
    assert school.account.contact_by_email("both@yopmail.com") is not None
    coached = coaching.account.contact_by_email("both@yopmail.com")
    assert coached is not None and [t["name"] for t in coached["tags"]] == ["Coaching client"]
    assert state["accounts"]["school"]["state"] == "held" and state["accounts"]["coaching"] == {"state": "ok"}
    assert state["accounts"]["default"] == {"state": "ok"}
    assert {a["account"] for a in listed} == {"school"}  # the held account's actions wait; the others ran
