"""One quota for the account: workers sharing it through Redis never provoke a 429, and use it fully."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from redis.asyncio import Redis

from app.systeme.client import SystemeClient
from app.systeme.quota import MemoryQuota, RedisQuota
from tests.conftest import SIM_KEY
from tests.flows import hammer


async def test_two_workers_share_one_quota_through_redis(sim, clean_redis):
    sim.account.rate_limit, sim.account.window_seconds = 15, 1.5
    redis = Redis.from_url(clean_redis)
    clients = [
        SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}, quota=RedisQuota(redis)) for _ in range(2)
    ]
    try:
        done = await asyncio.gather(*[hammer(c, 24, 8) for c in clients])
    finally:
        for c in clients:
            await c.aclose()
        await redis.aclose()
    assert sum(done) == 48
    assert sim.account.throttled == 0  # not a single 429


async def test_one_process_paces_itself_without_redis(sim):
    sim.account.rate_limit, sim.account.window_seconds = 10, 1.0
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}, quota=MemoryQuota())
    try:
        assert await hammer(client, 24, 6) == 24
    finally:
        await client.aclose()
    assert sim.account.throttled == 0


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_per_second_cap(sim, clean_redis, store):
    redis = Redis.from_url(clean_redis)
    quota = MemoryQuota(per_second=5) if store == "memory" else RedisQuota(redis, per_second=5)
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY}, quota=quota)
    try:
        assert await hammer(client, 16, 4) == 16
    finally:
        await client.aclose()
        await redis.aclose()
    per_second = Counter(int(t) for t in sim.simulator.times)
    assert max(per_second.values()) <= 5, per_second


async def test_an_api_without_quota_headers_is_not_slowed(sim):
    # The simulator always sends them; a plain answer (no headers) must not leave the client waiting to learn.
    import httpx

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [], "hasMore": False})

    client = SystemeClient(base_url="http://api.test", headers={}, transport=httpx.MockTransport(handler))
    try:
        assert await hammer(client, 20, 10) == 20
        assert client.quota.limit == -2  # type: ignore[attr-defined]
    finally:
        await client.aclose()
