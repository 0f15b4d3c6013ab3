"""One request budget for the whole Systeme.io account, shared by every worker.

Fed by the `X-RateLimit-Limit/Remaining/Refill` headers of each answer, it lets a request go only while the
current window has budget left, counting requests still in flight, so N workers together never pass the quota.
An optional per-second cap covers the Maton proxy's own limit (10 requests/s). The budget lives in Redis when
workers share it, in the process otherwise; both run the same algorithm (the Redis one as a Lua script, atomic).

Where the window ends is learned tightly: after we roll over to a new window (never before the old one ended), the
server's new window begins at the latest when it answers the first request we sent after the rollover, so it ends at
most a window after that answer. The `Refill` header, in whole seconds, is only the fallback: rounded up and with
a margin, it would waste a third of a one-second window.

In Redis, each request in flight is a ticket that expires on its own, so a worker killed mid-request stops being
counted a little after its request would have timed out. The keys name the account (a fingerprint of its URL and
credentials), so a new key or connection starts from a clean budget instead of an earlier account's window. The
per-second cap is Maton's, per Maton key: every connection of one key shares it (`rate_key`).

When the budget is short it goes to higher priorities first: a low-priority request (the service's own traffic)
never takes the last quarter of a window or of a second (`LOW_RESERVE`). A caller that must not hold a worker slot
while it waits (a run) passes `max_wait`: a longer wait raises the throttled TransientApiError at once, with the
wait as its retry_after, and the run gives its slot back (app/actions/runner.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Mapping
from typing import Protocol

import httpx
from redis.asyncio import Redis

from app.store.statuses import Priority
from app.systeme.errors import TransientApiError

# Longer waits end the attempt as a transient failure scheduled for when the quota refills.
MAX_WAIT_SECONDS = 65.0
_MARGIN_MS = 500


# The share of a window's budget (and of a per-second cap) a low-priority request leaves to the others; rounded
# down, so a tiny budget keeps no reserve and low traffic still goes.
LOW_RESERVE = 0.25


def reserve_fraction(priority: Priority) -> float:
    return LOW_RESERVE if priority == Priority.LOW else 0.0


# An in-flight ticket older than this is a request whose worker died: it stops counting.
TICKET_SECONDS = 60


class Quota(Protocol):
    async def acquire(self, *, priority: Priority = Priority.NORMAL, max_wait: float = MAX_WAIT_SECONDS) -> str:
        """Wait for budget (at most `max_wait` seconds, else TransientApiError); the ticket names this request in
        flight until `observe`."""

    async def observe(self, response: httpx.Response | None, ticket: str = "") -> None:
        """Feed an answer's headers back (None: the request failed before any answer)."""

    async def wait_seconds(self, *, priority: Priority = Priority.NORMAL) -> float:
        """How long a request at `priority` would wait now, granting nothing: a run asks before it claims or starts
        a step, so it gives its slot back before spending a request on a step it cannot finish."""


def account_key(base_url: str, headers: Mapping[str, str]) -> str:
    """The Redis key of one account's budget: the same credentials share it, other ones never do."""
    identity = base_url + "|" + "|".join(f"{k.lower()}={v}" for k, v in sorted(headers.items()))
    return "systeme-flow:quota:" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def rate_key(base_url: str, headers: Mapping[str, str]) -> str:
    """The key of the per-second cap: Maton's limit is its key's, so the connection header is left out (every
    connection of one Maton key shares it); for a direct account it is the account's own."""
    return account_key(base_url, {k: v for k, v in headers.items() if k.lower() != "maton-connection"})


class SecondCounter:
    """Requests granted in the current second, shared by the in-process quotas of one Maton key."""

    def __init__(self) -> None:
        self.second = 0
        self.count = 0

    def used(self, now_ms: int) -> int:
        return self.count if self.second == now_ms // 1000 else 0

    def add(self, now_ms: int) -> None:
        self.count = self.used(now_ms) + 1
        self.second = now_ms // 1000


def read_headers(response: httpx.Response, now_ms: int) -> tuple[int, int, int, int] | None:
    """(limit, remaining, window end in ms, its distance in ms) from the rate-limit headers, None when absent."""
    try:
        limit = int(response.headers["x-ratelimit-limit"])
        remaining = int(response.headers["x-ratelimit-remaining"])
        refill = float(response.headers["x-ratelimit-refill"])
    except (KeyError, ValueError):
        return None
    # The unit is undocumented: seconds until the quota refills, or a Unix time when larger than a day. Whole
    # seconds, rounded, hide up to half a second: count the window as ending that much later (a little budget
    # lost, no 429 at the boundary).
    reset_ms = int(refill * 1000) if refill > 86_400 else now_ms + int(refill * 1000)
    return limit, remaining, reset_ms + _MARGIN_MS, max(0, reset_ms - now_ms)


class _Paced:
    """The waiting loop both stores share; `_try` answers 0 (go) or the milliseconds to wait."""

    async def _try(self, now_ms: int, ticket: str, reserve: float) -> int:
        raise NotImplementedError

    async def acquire(self, *, priority: Priority = Priority.NORMAL, max_wait: float = MAX_WAIT_SECONDS) -> str:
        waited = 0.0
        ticket = secrets.token_hex(8)
        reserve = reserve_fraction(priority)
        while True:
            wait_ms = await self._try(int(time.time() * 1000), ticket, reserve)
            if wait_ms <= 0:
                return ticket
            if waited + wait_ms / 1000 > max_wait:
                raise TransientApiError("Systeme.io request quota used up", retry_after=wait_ms / 1000, throttled=True)
            await asyncio.sleep(wait_ms / 1000)
            waited += wait_ms / 1000


class MemoryQuota(_Paced):
    """The budget of one process (embedded mode): the same algorithm as the Redis script below."""

    def __init__(self, per_second: int = 0, *, second: SecondCounter | None = None) -> None:
        self.per_second = per_second
        self.second = second or SecondCounter()
        # -1: unknown until the first answer; -2: the API sends no quota headers, so only the per-second cap holds.
        self.limit = -1
        self.remaining = -1
        self.reset_ms = 0
        self.window_ms = 0
        self.rolled_ms = 0  # when we last rolled over to a new window
        self.pinned = False  # whether an answer since then told where the server's window ends
        self.tickets: dict[str, int] = {}  # in flight: ticket -> when it was granted
        self._lock = asyncio.Lock()

    @property
    def inflight(self) -> int:
        return len(self.tickets)

    async def _try(self, now_ms: int, ticket: str, reserve: float = 0.0) -> int:
        async with self._lock:
            if self.per_second and self.second.used(now_ms) >= self.per_second - int(self.per_second * reserve):
                return 1000 - now_ms % 1000
            if self.limit == -2:
                self._grant(ticket, now_ms)
                return 0
            if now_ms >= self.reset_ms and self.limit >= 0:
                # The window rolled over: a full budget until an answer says otherwise, less the requests still in
                # flight, which may land in the new window.
                self.remaining, self.reset_ms = self.limit - self.inflight, now_ms + self.window_ms
                self.rolled_ms, self.pinned = now_ms, False
            if self.limit < 0 and self.inflight > 0:
                return 50  # learn the quota from one answer before sending more
            if self.limit >= 0 and self.remaining <= int(self.limit * reserve):
                return max(1, self.reset_ms - now_ms)
            self.remaining -= 1
            self._grant(ticket, now_ms)
            return 0

    async def wait_seconds(self, *, priority: Priority = Priority.NORMAL) -> float:
        now_ms, reserve = int(time.time() * 1000), reserve_fraction(priority)
        if self.per_second and self.second.used(now_ms) >= self.per_second - int(self.per_second * reserve):
            return (1000 - now_ms % 1000) / 1000
        if self.limit < 0:
            return 0.0  # unknown (learned from the first answer) or not sent: nothing to wait for
        remaining = self.limit - self.inflight if now_ms >= self.reset_ms else self.remaining
        return max(1, self.reset_ms - now_ms) / 1000 if remaining <= int(self.limit * reserve) else 0.0

    def _grant(self, ticket: str, now_ms: int) -> None:
        self.tickets[ticket] = now_ms
        self.second.add(now_ms)

    async def observe(self, response: httpx.Response | None, ticket: str = "") -> None:
        async with self._lock:
            granted = self.tickets.pop(ticket, None)
            now_ms = int(time.time() * 1000)
            headers = read_headers(response, now_ms) if response is not None else None
            if headers is None:
                if response is not None and self.limit == -1:
                    self.limit = -2
                return
            limit, seen, seen_reset, refill_ms = headers
            self.limit = limit
            self.window_ms = max(self.window_ms, refill_ms)
            if granted is not None and granted < self.rolled_ms:
                return  # sent before our rollover: which window it counted in is not known
            if granted is not None and self.rolled_ms and not self.pinned:
                # The first answer to a request sent after the rollover: the server's window began by now.
                self.reset_ms, self.pinned = min(seen_reset, now_ms + self.window_ms), True
                self.remaining = min(self.remaining, seen - self.inflight)
            elif not self.pinned and seen_reset > self.reset_ms + 1000:  # a window we did not know about
                self.reset_ms, self.remaining = seen_reset, seen - self.inflight
            else:
                self.remaining = min(self.remaining, seen - self.inflight)


_ACQUIRE = """
local now = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local q = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset', 'window')
local limit = tonumber(q[1] or '-1')
local remaining = tonumber(q[2] or '-1')
local reset = tonumber(q[3] or '0')
local window = tonumber(q[4] or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local inflight = redis.call('ZCARD', KEYS[3])
local second_key = KEYS[2] .. ':' .. math.floor(now / 1000)
local reserve = tonumber(ARGV[5])
if per_second > 0 then
  local used = tonumber(redis.call('GET', second_key) or '0')
  if used >= per_second - math.floor(per_second * reserve) then return 1000 - (now % 1000) end
end
if limit == -2 then remaining = 1 end
if now >= reset and limit >= 0 then
  -- Requests still in flight may land in the new window: count them in it.
  remaining = limit - inflight
  reset = now + window
  redis.call('HSET', KEYS[1], 'rolled', now, 'pinned', 0)
end
if limit == -1 and inflight > 0 then return 50 end
if limit >= 0 and remaining <= math.floor(limit * reserve) then
  redis.call('HSET', KEYS[1], 'remaining', remaining, 'reset', reset)
  return math.max(1, reset - now)
end
redis.call('HSET', KEYS[1], 'remaining', remaining - 1, 'reset', reset)
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[3], 86400000)
if per_second > 0 then
  redis.call('INCR', second_key)
  redis.call('PEXPIRE', second_key, 2000)
end
return 0
"""

# The acquire script's decision, read-only: nothing granted, nothing rolled over.
_PEEK = """
local now = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local q = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset')
local limit = tonumber(q[1] or '-1')
local remaining = tonumber(q[2] or '-1')
local reset = tonumber(q[3] or '0')
if per_second > 0 then
  local used = tonumber(redis.call('GET', KEYS[2] .. ':' .. math.floor(now / 1000)) or '0')
  if used >= per_second - math.floor(per_second * reserve) then return 1000 - (now % 1000) end
end
if limit < 0 then return 0 end
if now >= reset then remaining = limit - redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf') end
if remaining <= math.floor(limit * reserve) then return math.max(1, reset - now) end
return 0
"""

_OBSERVE = """
local now = tonumber(ARGV[1])
local q = redis.call('HMGET', KEYS[1], 'remaining', 'reset', 'window', 'rolled', 'pinned')
local remaining = tonumber(q[1] or '-1')
local reset = tonumber(q[2] or '0')
local window = tonumber(q[3] or '0')
local rolled = tonumber(q[4] or '0')
local pinned = tonumber(q[5] or '0')
local expiry = redis.call('ZSCORE', KEYS[3], ARGV[6])
redis.call('ZREM', KEYS[3], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local inflight = redis.call('ZCARD', KEYS[3])
if ARGV[2] == '' then
  -- An answer without quota headers: stop waiting to learn them.
  if ARGV[5] == '1' and tonumber(redis.call('HGET', KEYS[1], 'limit') or '-1') == -1 then
    redis.call('HSET', KEYS[1], 'limit', -2)
  end
  return 0
end
local limit, seen, seen_reset = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
window = math.max(window, tonumber(ARGV[7]))
local granted = expiry and (tonumber(expiry) - tonumber(ARGV[8])) or nil
if granted and granted < rolled then
  -- Sent before our rollover: which window it counted in is not known.
  redis.call('HSET', KEYS[1], 'limit', limit, 'window', window)
  return 0
end
if granted and rolled > 0 and pinned == 0 then
  -- The first answer to a request sent after the rollover: the server's window began by now.
  reset = math.min(seen_reset, now + window)
  pinned = 1
  remaining = math.min(remaining, seen - inflight)
elseif pinned == 0 and seen_reset > reset + 1000 then
  -- A window we did not know about (a pinned end is already tight; a slow answer must not push it back).
  reset = seen_reset
  remaining = seen - inflight
else
  remaining = math.min(remaining, seen - inflight)
end
redis.call('HSET', KEYS[1], 'limit', limit, 'remaining', remaining, 'reset', reset, 'window', window, 'pinned', pinned)
return 0
"""


class RedisQuota(_Paced):
    """The budget shared by every worker through Redis; each step is one atomic script call."""

    def __init__(
        self, redis: Redis, *, per_second: int = 0, key: str = "systeme-flow:quota", second_key: str | None = None
    ) -> None:
        self.redis = redis
        self.per_second = per_second
        # The per-second counter may be shared wider than the window (a Maton key's connections: `rate_key`).
        self.keys = [key, f"{second_key or key}:second", f"{key}:inflight"]
        self._acquire = redis.register_script(_ACQUIRE)
        self._observe = redis.register_script(_OBSERVE)
        self._peek = redis.register_script(_PEEK)

    async def wait_seconds(self, *, priority: Priority = Priority.NORMAL) -> float:
        args: list[int | float] = [int(time.time() * 1000), self.per_second, reserve_fraction(priority)]
        return int(await self._peek(keys=self.keys, args=args)) / 1000

    async def _try(self, now_ms: int, ticket: str, reserve: float = 0.0) -> int:
        args: list[int | str | float] = [now_ms, self.per_second, ticket, TICKET_SECONDS * 1000, reserve]
        return int(await self._acquire(keys=self.keys, args=args))

    async def observe(self, response: httpx.Response | None, ticket: str = "") -> None:
        now_ms = int(time.time() * 1000)
        headers = read_headers(response, now_ms) if response is not None else None
        limit, remaining, reset_ms, refill_ms = headers or ("", "", "", 0)
        args: list[int | str] = [now_ms, limit, remaining, reset_ms, "1" if response is not None else "0", ticket]
        args += [refill_ms, TICKET_SECONDS * 1000]
        await self._observe(keys=self.keys, args=args)
