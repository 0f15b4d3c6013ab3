"""Per-source, per-client rate limits for unsigned sources: in Redis when configured (shared by replicas)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from typing import Protocol

from arq.connections import ArqRedis


class Limiter(Protocol):
    async def hit(self, key: str, limit: int, window: int) -> int | None:
        """Count one post; None when allowed, else the seconds until the window ends."""


class MemoryLimiter:
    """Fixed windows in this process: enough for one embedded replica."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key: str, limit: int, window: int) -> int | None:
        now = time.time()
        slot = int(now // window)
        if len(self._counts) > 10_000:  # forget old windows now and then
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= slot}
        count = self._counts[(key, slot)] = self._counts.get((key, slot), 0) + 1
        return None if count <= limit else int((slot + 1) * window - now) + 1


class RedisLimiter:
    """Fixed windows in Redis, so every API replica counts against the same limit."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def hit(self, key: str, limit: int, window: int) -> int | None:
        now = time.time()
        slot = int(now // window)
        name = f"systeme-flow:rate:{key}:{slot}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window + 1)
            count, _ = await pipe.execute()
        return None if int(count) <= limit else int((slot + 1) * window - now) + 1


def trusted_networks(setting: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip()]


def _is_trusted(address: str, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def forwarded_https(
    peer: str | None, headers: Mapping[str, str], trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """True when a trusted proxy says the client came over HTTPS (`X-Forwarded-Proto: https`, its last hop)."""
    if peer is None or not _is_trusted(peer, trusted):
        return False
    return headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower() == "https"


def client_address(
    peer: str | None, headers: Mapping[str, str], trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The peer's address, or, when the peer is a trusted proxy, the nearest untrusted X-Forwarded-For entry."""

    def is_trusted(address: str) -> bool:
        return _is_trusted(address, trusted)

    address = peer or "unknown"
    if not is_trusted(address):
        return address
    # Walk from the right: each hop was added by the proxy before it; stop at the first we do not trust.
    for hop in reversed([h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]):
        address = hop
        if not is_trusted(hop):
            break
    return address
