"""Helpers the test suites share: run actions, read rows, wait for a running service to settle, a worker's
environment. Test modules import these from here, never from each other."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.accounts.registry import AccountClients
from app.actions.policy import RetryPolicy
from app.actions.runner import run_actions
from app.config import rules_environment
from app.errors import RulesError
from app.pipeline.embedded import EmbeddedExecutor
from app.pipeline.service import Pipeline, build_pipeline, close_pipeline
from app.rules.current import RulesInForce
from app.rules.engine import RuleSet
from app.rules.loader import load_rules, parse_rules
from app.store.db import create_engine
from app.store.events import NewEvent, record_events
from app.store.models import actions, api_calls, events, utcnow
from app.store.plans import Unplanned
from app.systeme.client import SystemeClient
from tests.conftest import ADMIN, SIM_KEY, planned, wait_for
from tests.factories import RULES, record_event, stripe_checkout, stripe_headers

POLICY = RetryPolicy(delays=(0.01,), max_attempts=3, lease=timedelta(seconds=30))


async def plan_and_store(
    engine, payload: dict[str, Any], *, event_type: str, rules: str = RULES, occurred_at: datetime | None = None
) -> list[str]:
    """A Stripe event stored and planned with `rules` (at the provider's `occurred_at`, if given): its action ids,
    in plan order."""
    rs = RuleSet(parse_rules(rules, path="r", env=rules_environment()))
    outcomes = rs.plan(source="stripe", event_type=event_type, payload=payload)
    stored = await record_event(
        engine,
        source="stripe",
        event_type=event_type,
        provider_id=payload.get("id"),
        payload=payload,
        headers={},
        occurred_at=occurred_at,
        outcomes=outcomes,
        rules_version=rs.version,
        now=utcnow(),
    )
    return [action_id for action_id, _ in stored.actions]


async def row(engine, action_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(actions).where(actions.c.id == action_id))).one()


async def calls_of(engine, action_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(sa.select(api_calls).where(api_calls.c.action_id == action_id)))


async def run(engine, client: AccountClients, action_id: str, policy: RetryPolicy = POLICY):
    """One run, as a worker runs it: with the account clients."""
    return await run_actions(engine=engine, client=client, action_id=action_id, policy=policy)


async def event_actions(url: str, event_id: str) -> list[dict]:
    return list((await planned(url, event_id))["actions"])


async def settled(url: str, *event_ids: str) -> None:
    async def done() -> bool:
        for event_id in event_ids:
            if any(a["status"] in ("pending", "running") for a in await event_actions(url, event_id)):
                return False
        return True

    await wait_for(done, timeout=30)


def worker_env(database_url: str, redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MATON_API_KEY", "ADMIN_TOKEN")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SYSTEME_API_KEY=SIM_KEY,
        SYSTEME_API_URL=sim_url,
        LOG_FORMAT="json",
        **extra,
    )
    return env


async def count_rows(url: str) -> tuple[int, int]:
    """(events, actions) stored in the database at `url`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return (
                await conn.scalar(sa.select(sa.func.count()).select_from(events)) or 0,
                await conn.scalar(sa.select(sa.func.count()).select_from(actions)) or 0,
            )
    finally:
        await engine.dispose()


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, path="r.yaml", env=env or {})
    return caught.value.problems


async def hammer(client: SystemeClient, count: int, concurrency: int) -> int:
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        for _ in range(n):
            await client.session().get_json("/api/tags")
            done += 1

    await asyncio.gather(*[worker(count // concurrency) for _ in range(concurrency)])
    return done


async def run_when_due(engine, client: AccountClients, action_id: str):
    """Run an action's run now, its pending rows made due (a retry's delay skipped)."""
    async with engine.begin() as conn:
        await conn.execute(actions.update().where(actions.c.status == "pending").values(next_attempt_at=utcnow()))
    return await run(engine, client, action_id)


WINDOW = timedelta(days=7)


def rules_of(settings) -> RuleSet:
    return RuleSet(load_rules(settings.rules_file, {}))


async def store_unplanned(engine, email: str, *, age: float) -> Unplanned:
    """An event as ingest stores it, `age` seconds ago, whose process stopped before planning it."""
    payload = stripe_checkout(email)
    received = utcnow() - timedelta(seconds=age)
    [stored] = await record_events(
        engine,
        [NewEvent("stripe", "checkout.session.completed", payload["id"], payload, {}, None, "v0", received)],
    )
    return Unplanned(stored.event_id, "stripe", "checkout.session.completed", payload, None, received)


def by_kind(rows: list[dict]) -> dict[str, dict]:
    return {(a["kind"] if a["kind"] != "tag" else a["params"]["name"]): a for a in rows}


def burst(database_url: str, redis_url: str, sim_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "worker", "--burst", "--no-migrate"],
        env=worker_env(database_url, redis_url, sim_url),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr


async def a_week_passes(database_url: str) -> None:
    """A direct update stands for the time passing: every scheduled step is due now."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                actions.update()
                .where(actions.c.status == "scheduled")
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


def post_planned(url: str, event: dict[str, Any], *, admin: str = ADMIN) -> str:
    """Post a signed Stripe event from synchronous code (a browser test) and return its id once the rules judged it."""
    body = json.dumps(event).encode()
    answer = httpx.post(f"{url}/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text
    event_id = str(answer.json()["event_id"])
    deadline = time.monotonic() + 15
    while (
        httpx.get(f"{url}/v1/events/{event_id}", headers={"Authorization": f"Bearer {admin}"}).json()["planned_at"]
        is None
    ):
        assert time.monotonic() < deadline, f"{event_id} was never judged by the rules"
        time.sleep(0.05)
    return event_id


@asynccontextmanager
async def processes(settings, count: int = 2) -> AsyncIterator[list[Pipeline]]:
    """`count` pipelines as `count` processes build them (an engine and a holder id each) on one database, their
    runs dispatched to embedded executors that are never started: the sweeps and upkeeps are called directly."""
    built = []
    try:
        for _ in range(count):
            rules = RulesInForce(settings.rules_file)
            rules.load()
            engine = create_engine(settings.database_url)
            built.append(build_pipeline(settings, engine, rules, EmbeddedExecutor(), None))
        yield built
    finally:
        for pipeline in built:
            await close_pipeline(pipeline)
