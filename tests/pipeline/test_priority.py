"""Runs by priority, then first come first served; accounts that never wait for each other (issue 20)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from arq import create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis

from app.accounts.registry import AccountClients
from app.config import rules_environment
from app.pipeline.dispatch import ArqDispatcher
from app.pipeline.embedded import EmbeddedExecutor
from app.rules.loader import parse_rules
from app.simulator import Simulator
from app.store.actions import due_actions
from app.store.db import create_engine
from app.store.models import utcnow
from app.store.statuses import Priority
from app.systeme.client import SystemeClient
from app.systeme.errors import TransientApiError
from app.systeme.quota import MemoryQuota, Quota, RedisQuota
from tests.conftest import ADMIN, SIM_KEY, post_stripe, running, wait_for
from tests.factories import RULES, STRIPE_SECRET, checkout_for, write_rules
from tests.flows import event_actions, plan_and_store, problems, row, settled
from tests.servers import ServerThread

PRIORITY_RULES = f"""
version: 1
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
rules:
  - id: housekeeping
    on: stripe/checkout.session.completed
    if: event.data.object.metadata.product == "low"
    priority: low
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions: [ {{ tag: Checked }} ]
  - id: lead
    on: stripe/checkout.session.completed
    if: event.data.object.metadata.product == "normal"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions: [ {{ tag: Lead }} ]
  - id: buyer
    on: stripe/checkout.session.completed
    if: event.data.object.metadata.product == "grant"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions: [ {{ tag: Buyer }}, {{ enroll: {{ course: 101, access: full_access }} }} ]
"""


async def test_due_runs_go_by_priority_then_by_event_order(database_url):
    engine = create_engine(database_url)
    try:
        planned: dict[str, list[str]] = {}
        # Stored oldest first: the low-priority event, then a normal one, then two buyers.
        for n, product in enumerate(["low", "normal", "grant", "grant"]):
            payload = checkout_for(f"p{n}@yopmail.com", product)
            payload["created"] = 1_700_000_000 + n
            planned[f"{product}{n}"] = await plan_and_store(
                engine, payload, event_type="checkout.session.completed", rules=PRIORITY_RULES
            )
        due = [action_id for action_id, _ in await due_actions(engine, now=utcnow())]
        ranks = {name: (await row(engine, ids[0])).priority for name, ids in planned.items()}
    finally:
        await engine.dispose()
    # A rule that enrolls is high by default; one that only tags, normal; `priority: low` as written.
    assert ranks == {"low0": 2, "normal1": 1, "grant2": 0, "grant3": 0}
    assert due == [planned["grant2"][0], planned["grant3"][0], planned["normal1"][0], planned["low0"][0]]


async def test_arq_starts_a_high_priority_run_ahead_of_a_normal_backlog(clean_redis):
    pool = await create_pool(RedisSettings.from_dsn(clean_redis))
    dispatcher = ArqDispatcher(pool)
    try:
        await dispatcher.dispatch([("act_normal1", 1), ("act_normal2", 1)])
        await dispatcher.dispatch([("act_low", 1)], priority=Priority.LOW)
        await dispatcher.dispatch([("act_high", 1)], priority=Priority.HIGH)
        # A retry is never started before its time, whatever its priority.
        later = utcnow() + timedelta(seconds=30)
        await dispatcher.dispatch([("act_retry", 2)], at=later, priority=Priority.HIGH)
        queued = await pool.zrange("arq:queue", 0, -1, withscores=True)
    finally:
        await pool.aclose()
    order = [job.decode().split(":")[0] for job, _ in queued]
    assert order == ["act_high", "act_normal1", "act_normal2", "act_low", "act_retry"]
    assert queued[-1][1] >= int(later.timestamp() * 1000)


async def test_the_embedded_executor_takes_higher_priorities_first_then_arrival_order():
    executor = EmbeddedExecutor()
    await executor.dispatch([("a_low", 1)], priority=Priority.LOW)
    await executor.dispatch([("a_normal", 1), ("b_normal", 1)])
    await executor.dispatch([("a_high", 1)], priority=Priority.HIGH)
    taken = [executor.queue.get_nowait()[2] for _ in range(4)]
    assert taken == ["a_high", "a_normal", "b_normal", "a_low"]


def _quota(store: str, redis: Redis) -> Quota:
    return MemoryQuota() if store == "memory" else RedisQuota(redis)


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_short_quota_goes_to_higher_priorities_first(sim, clean_redis, store):
    sim.account.rate_limit, sim.account.window_seconds = 8, 60.0
    redis = Redis.from_url(clean_redis)
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}, quota=_quota(store, redis))

    async def granted(priority: Priority) -> tuple[int, float]:
        """Requests that go without waiting at `priority`, and the wait the quota asked for then."""
        count = 0
        while True:
            try:
                await client.session(priority=priority, max_wait=0).get_json("/api/tags")
            except TransientApiError as exc:
                assert exc.throttled and exc.retry_after is not None
                return count, exc.retry_after
            count += 1

    try:
        await client.session().get_json("/api/tags")  # the quota is learned from one answer: 7 left
        low, low_wait = await granted(Priority.LOW)
        high, high_wait = await granted(Priority.HIGH)
    finally:
        await client.aclose()
        await redis.aclose()
    # Low traffic leaves the last quarter of the window (2 of 8) to the others; high takes it.
    assert (low, high) == (5, 2)
    assert low_wait > 1 and high_wait > 1  # until the window ends: far beyond a slot's wait
    assert sim.account.throttled == 0


def _maton_rules(first: str, second: str) -> str:
    return RULES.replace(
        "version: 1\n", f"version: 1\naccounts:\n  one: {{ connection: {first} }}\n  two: {{ connection: {second} }}\n"
    )


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_maton_connections_of_one_key_share_its_ten_requests_a_second(make_settings, sim, clean_redis, store):
    ids = []
    for _ in range(2):
        created = sim.simulator.connections.create("systeme", sim.url)
        sim.simulator.connections.set_status(created["connection_id"], "ACTIVE")
        ids.append(created["connection_id"])
    settings = make_settings(systeme_api_key=None, maton_api_key=SIM_KEY, maton_control_url=sim.url)
    rules = parse_rules(_maton_rules(*ids), path="r.yaml", env=rules_environment()).file
    redis = Redis.from_url(clean_redis)
    clients = AccountClients(settings, rules, redis=redis if store == "redis" else None)
    try:
        one, two = clients.client("one"), clients.client("two")
        assert one is not None and two is not None and one.maton and two.maton

        async def hammer(client: SystemeClient) -> None:
            for _ in range(12):
                await client.session().get_json("/api/tags")

        await asyncio.gather(*[hammer(c) for c in (one, two, one, two)])
    finally:
        await clients.aclose()
        await redis.aclose()
    per_second = Counter(int(t) for t in sim.simulator.times)
    assert sum(per_second.values()) == 48
    # One budget for the key: the two connections together, never 10 each.
    assert max(per_second.values()) <= 10, per_second


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


async def _actions(url: str, **params: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as http:
        answer = await http.get("/v1/actions", params={**params, "limit": "200"})
    items: list[dict] = answer.json()["items"]
    return items


async def test_one_accounts_backlog_never_holds_another_accounts_buyer(make_settings, database_url, tmp_path):
    school, coaching = Simulator(api_key="school-key"), Simulator(api_key="coaching-key")
    school.seed(courses=[{"id": 101, "name": "Masterclass"}], communities=[{"id": 7, "name": "Insiders"}])
    # The school's quota: 3 requests a window, each buyer needs about 5, so 6 buyers are a backlog of minutes.
    school.account.rate_limit, school.account.window_seconds = 3, 20.0
    with ServerThread(school.app) as school_server, ServerThread(coaching.app) as coaching_server:
        text = TWO_ACCOUNTS.replace("SCHOOL_URL", school_server.url).replace("COACHING_URL", coaching_server.url)
        (tmp_path / "accounts").mkdir()
        rules = write_rules(tmp_path / "accounts", text)
        # As many run slots as the school has buyers: without giving them back, all would sleep on its quota.
        settings = make_settings(database_url=database_url, rules_file=str(rules), embedded_concurrency=3)
        with running(settings) as url:
            for n in range(6):
                await post_stripe(url, checkout_for(f"school{n}@yopmail.com", "masterclass"))

            async def school_backlogged() -> bool:
                return len(school.account.calls) >= 3  # the window's budget is spent: the rest must wait

            await wait_for(school_backlogged, timeout=30)
            sale = checkout_for("coached@yopmail.com", "coaching")
            event_id = await post_stripe(url, sale)

            async def coaching_done() -> bool:
                return any(a["account"] == "coaching" and a["status"] == "succeeded"
                           for a in await event_actions(url, event_id))  # fmt: skip

            await wait_for(coaching_done, timeout=30)
            waiting = [a for a in await _actions(url, status="pending") if a["account"] == "school"]
            school_calls = len(school.account.calls)
    coached = coaching.account.contact_by_email("coached@yopmail.com")
    assert coached is not None and [t["name"] for t in coached["tags"]] == ["Coaching client"]
    # Served while the school still had most of its buyers waiting for its quota, none of them failed for it.
    assert len(waiting) >= 10 and school_calls < 6 * 5
    assert all(a["attempts"] == 0 or "quota" in (a["last_error"] or "") for a in waiting)
    assert school.account.throttled == 0


async def test_runs_given_back_for_the_quota_all_end_once(make_settings, database_url, sim):
    # A quota far below the burst: runs give their slots back again and again, and each buyer is served once.
    sim.account.rate_limit, sim.account.window_seconds = 4, 1.0
    with running(make_settings(database_url=database_url, embedded_concurrency=3)) as url:
        events = [await post_stripe(url, checkout_for(f"once{n}@yopmail.com", "masterclass")) for n in range(5)]
        await settled(url, *events)
        statuses = [a["status"] for e in events for a in await event_actions(url, e)]
    assert statuses == ["succeeded"] * 15
    buyers = {sim.contact(f"once{n}@yopmail.com")["id"] for n in range(5)}
    enrolled = Counter(e["contact"]["id"] for e in sim.account.enrollments.values())
    joined = Counter(m["contact"]["id"] for m in sim.account.memberships.values())
    assert enrolled == joined == dict.fromkeys(buyers, 1)
    writes = Counter(c["path"].split("/")[-1] for c in sim.writes())
    assert writes["enrollments"] == writes["memberships"] == 5
    assert sim.account.throttled == 0


def test_a_rules_priority_is_one_of_three_and_defaults_by_what_it_grants():
    text = RULES.replace(
        "  - id: newsletter\n    on: signup\n", "  - id: newsletter\n    priority: PRIO\n    on: signup\n"
    )
    loaded = parse_rules(text.replace("PRIO", "low"), path="r.yaml", env={}).file
    found = {rule.id: rule.effective_priority for rule in loaded.rules}
    assert found["newsletter"] == "low" and found["masterclass-purchase"] == "high"
    assert found["partner-signup"] == found["refund-revokes-access"] == "normal"
    assert problems(text.replace("PRIO", "urgent")) == [
        "r.yaml:42:15: rule 'newsletter': `priority`: Input should be 'high', 'normal' or 'low'"
    ]
