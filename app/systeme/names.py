"""Names of tags, courses and communities to ids, per account, shared by every worker when Redis is configured.

An entry lives a few minutes, and is dropped at once when an answer says the id it holds is wrong (a 404 or 422
that names it), so a tag deleted or a course renamed in Systeme.io costs one extra lookup, not a failed action.
"""

from __future__ import annotations

import hashlib
import time
from typing import Protocol

from redis.asyncio import Redis

NAME_TTL_SECONDS = 300


class NameCache(Protocol):
    async def get(self, kind: str, name: str) -> int | None: ...

    async def put(self, kind: str, name: str, value: int) -> None: ...

    async def drop(self, kind: str, name: str) -> None: ...


class MemoryNames:
    def __init__(self, ttl: float = NAME_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._items: dict[tuple[str, str], tuple[int, float]] = {}

    async def get(self, kind: str, name: str) -> int | None:
        hit = self._items.get((kind, name))
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    async def put(self, kind: str, name: str, value: int) -> None:
        self._items[(kind, name)] = (value, time.monotonic() + self.ttl)

    async def drop(self, kind: str, name: str) -> None:
        self._items.pop((kind, name), None)


class RedisNames:
    def __init__(self, redis: Redis, *, account: str = "default", ttl: int = NAME_TTL_SECONDS) -> None:
        self.redis = redis
        self.prefix = f"systeme-flow:names:{account}:"
        self.ttl = ttl

    def _key(self, kind: str, name: str) -> str:
        # Hashed: a name may be long or hold anything; the key stays short and safe.
        return self.prefix + kind + ":" + hashlib.sha256(name.encode()).hexdigest()[:32]

    async def get(self, kind: str, name: str) -> int | None:
        value = await self.redis.get(self._key(kind, name))
        return int(value) if value is not None else None

    async def put(self, kind: str, name: str, value: int) -> None:
        await self.redis.set(self._key(kind, name), value, ex=self.ttl)

    async def drop(self, kind: str, name: str) -> None:
        await self.redis.delete(self._key(kind, name))
