"""Shared fixtures: real Redis, real SQLite and PostgreSQL databases, the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.registry import AccountClients
from app.config import Settings, rules_environment
from app.main import create_app
from app.rules.loader import parse_rules
from app.server import server_options
from app.simulator import Simulator
from app.store.db import create_engine
from app.store.migrate import upgrade_async
from tests.factories import RULES, stripe_headers, write_rules
from tests.servers import ServerThread

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Throwaway databases are named with this prefix, so tests sharing a server never touch anything else.
DB_PREFIX = os.environ.get("TEST_DB_PREFIX", "sf_test_")
SIM_KEY = "sim-api-key-for-tests"
ADMIN = "operator-token-for-tests"


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis does not answer at {REDIS_URL} ({exc}): start it (see .ci/run) or set TEST_REDIS_URL")
    return REDIS_URL


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


async def _admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL does not answer at {POSTGRES_URL} ({exc}): start it or set TEST_POSTGRES_URL")


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A throwaway PostgreSQL database, migrated, dropped afterwards."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", DB_PREFIX):
        pytest.fail(f"TEST_DB_PREFIX={DB_PREFIX!r}: use lower-case letters, digits and _ (at most 41)")
    name = f"{DB_PREFIX}{uuid.uuid4().hex[:12]}"
    admin = await _admin_connection()
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    try:
        await upgrade_async(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/var/systeme-flow.db"
    await upgrade_async(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both stores: every test using this runs once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@dataclass
class Sim:
    simulator: Simulator
    url: str

    @property
    def account(self) -> Any:
        return self.simulator.account

    def contact(self, email: str) -> dict[str, Any] | None:
        return self.account.contact_by_email(email)

    def tag_names(self, email: str) -> list[str]:
        contact = self.contact(email)
        return sorted(t["name"] for t in contact["tags"]) if contact else []

    def writes(self) -> list[dict[str, Any]]:
        return [c for c in self.account.calls if c["method"] != "GET"]


@pytest.fixture
def sim() -> Iterator[Sim]:
    simulator = Simulator(api_key=SIM_KEY)
    simulator.seed(
        courses=[{"id": 101, "name": "Masterclass"}, {"id": 102, "name": "Bonus"}],
        communities=[{"id": 7, "name": "Insiders"}],
    )
    with ServerThread(simulator.app) as server:
        yield Sim(simulator, server.url)


@pytest.fixture
def make_settings(tmp_path: Path, sim: Sim) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "rules_file": str(write_rules(tmp_path)),
            "systeme_api_key": SIM_KEY,
            "systeme_api_url": sim.url,
            "admin_token": ADMIN,
            "redis_url": None,
            "maton_api_key": None,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on each database (with `database_url`), disposed afterwards."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def complete(make_settings: Callable[..., Settings]) -> AsyncIterator[AccountClients]:
    """The account clients of the simulator's one account (`default`) with a complete contact mirror."""
    rules = parse_rules(RULES, path="r", env=rules_environment()).file
    clients = AccountClients(make_settings(mirror_mode="complete"), rules)
    yield clients
    await clients.aclose()


@contextmanager
def running(settings: Settings) -> Iterator[str]:
    """The real service on a loopback port; yields its base URL."""
    with ServerThread(create_app(settings), server_options(settings)) as server:
        yield server.url


async def wait_for(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def post_stripe(url: str, event: dict[str, Any], *, admin: str = ADMIN) -> str:
    """Post a signed Stripe event; it must be stored as new. Returns its event id once it is planned (read with
    the operator token `admin`)."""
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text
    event_id = str(answer.json()["event_id"])
    await planned(url, event_id, admin=admin)
    return event_id


async def planned(url: str, event_id: str, *, admin: str = ADMIN, timeout: float = 15.0) -> dict[str, Any]:
    """The event (as the operator API shows it) once the rules judged it: right after its answer, in the process
    that stored it (app/pipeline/planner.py). Tests read actions through this, so "no action pending" never means "not
    planned yet"."""
    found: dict[str, Any] = {}

    async def judged() -> bool:
        async with operator(url, admin) as http:
            answer = await http.get(f"/v1/events/{event_id}")
        found.update(answer.json())
        return answer.status_code == 200 and found["planned_at"] is not None

    await wait_for(judged, timeout)
    return found


def operator(url: str, token: str = ADMIN) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
