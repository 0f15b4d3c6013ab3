"""Drain throughput: a backlog of actions through one arq worker against the simulator, vs arq no-op jobs.

    python -m bench.drain [--actions 1000] [--database-url URL] [--redis-url URL]

Both figures come from the same run, same Redis, same worker settings (max_jobs); the simulator runs as its own
process with no rate limit. Each action is a `tag` for a new contact: find the contact, create it, tag it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

from arq import Worker
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from app.config import Settings
from app.dispatch import ArqDispatcher
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.db import create_engine
from app.store.events import record_event
from app.store.migrate import upgrade_async
from app.store.models import utcnow
from bench.common import report, server
from workers.settings import WorkerSettings

RULES = """
version: 1
sources:
  signup: { type: form, token: t }
rules:
  - id: newsletter
    on: signup
    contact: { email: "{{ event.email }}" }
    actions: [ { tag: Newsletter } ]
"""
MAX_JOBS = 20


async def noop(ctx: dict[str, Any], n: int) -> int:
    return n


async def baseline(redis_url: str, count: int) -> float:
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    for n in range(count):
        await redis.enqueue_job("noop", n, _queue_name="bench:noop")
    await redis.aclose()
    worker = Worker(
        functions=[noop],
        queue_name="bench:noop",
        redis_settings=RedisSettings.from_dsn(redis_url),
        burst=True,
        max_jobs=MAX_JOBS,
        keep_result=0,
        poll_delay=0.05,
    )
    started = time.perf_counter()
    await worker.main()
    seconds = time.perf_counter() - started
    await worker.close()
    return seconds


async def backlog(settings: Settings, count: int) -> None:
    rules = RuleSet(parse_rules(RULES, path="bench", env={}))
    engine = create_engine(settings.database_url)
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
    dispatcher = ArqDispatcher(redis)
    for n in range(count):
        payload = {"email": f"drain{n}@example.com"}
        stored = await record_event(
            engine,
            source="signup",
            event_type=None,
            provider_id=None,
            payload=payload,
            headers={},
            occurred_at=None,
            outcomes=rules.plan(source="signup", event_type=None, payload=payload),
            rules_version=rules.version,
            now=utcnow(),
            dry_run=False,
        )
        await dispatcher.dispatch([(a, 1) for a, _ in stored.actions])
    await redis.aclose()
    await engine.dispose()


async def drain(settings: Settings) -> tuple[float, int]:
    worker = Worker(
        functions=WorkerSettings.functions,
        on_startup=WorkerSettings.on_startup,
        on_shutdown=WorkerSettings.on_shutdown,
        redis_settings=RedisSettings.from_dsn(settings.redis_url or ""),
        burst=True,
        max_jobs=MAX_JOBS,
        keep_result=0,
        max_tries=1,
        poll_delay=0.05,
        ctx={"settings": settings},
    )
    started = time.perf_counter()
    await worker.main()
    seconds = time.perf_counter() - started
    await worker.close()
    return seconds, worker.jobs_complete


async def run(args: argparse.Namespace, folder: str, sim_url: str) -> None:
    settings = Settings(
        _env_file=None,
        database_url=args.database_url or f"sqlite+aiosqlite:///{folder}/drain.db",
        redis_url=args.redis_url,
        systeme_api_key="bench-key",
        systeme_api_url=sim_url,
        maton_api_key=None,
    )
    await upgrade_async(settings.database_url)
    await Redis.from_url(args.redis_url).flushdb()
    noop_rate = report("arq no-op jobs", await baseline(args.redis_url, args.actions), args.actions)
    await backlog(settings, args.actions)
    seconds, done = await drain(settings)
    assert done == args.actions, f"{done} of {args.actions} actions ran"
    drain_rate = report("systeme-flow actions (tag, new contact)", seconds, done)
    print(f"{'ratio actions / no-op':<34} {drain_rate / noop_rate:9.3f}   (target >= 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, server(["-m", "app", "simulator", "--api-key", "bench-key"]) as url:
        asyncio.run(run(args, folder, url))


if __name__ == "__main__":
    main()
