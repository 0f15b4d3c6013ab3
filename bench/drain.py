"""Drain throughput: a backlog of actions through arq workers against the simulator.

    python -m bench.drain [--actions 1000]                      one worker, no rate limit, vs arq no-op jobs
    python -m bench.drain --limit 400 --window 10 --workers 2 [--actions 2000]
                                                                 N worker processes under a quota of L per window

The first form puts the drain rate beside arq running no-op jobs in the same run (same Redis, same max_jobs).
The second runs `systeme-flow worker --burst` processes against a simulator limited to L requests per window and
prints the achieved request rate against L, the 429s received (target 0) and the actions that did not succeed
(must be 0). Each action is a `tag` for a new contact: find the contact, create it, tag it (three requests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from arq import Worker
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from app.config import Settings
from app.pipeline.dispatch import ArqDispatcher
from app.pipeline.planner import plan_events
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.store.db import create_engine
from app.store.events import NewEvent, record_events
from app.store.migrate import upgrade_async
from app.store.models import actions, utcnow
from app.store.plans import Unplanned
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
        # As ingest and the planner do it: stored alone, then judged and handed to the workers.
        now = utcnow()
        payload = {"email": f"drain{n}@yopmail.com"}
        [stored] = await record_events(engine, [NewEvent("signup", None, None, payload, {}, None, rules.version, now)])
        event = Unplanned(stored.event_id, "signup", None, payload, None, now)
        await plan_events(engine, rules, [event], dispatcher.dispatch, approval_window=timedelta(days=7))
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


async def fresh(args: argparse.Namespace, folder: str, sim_url: str) -> Settings:
    """Settings for a new database and an empty Redis database, pointed at the simulator."""
    rules = Path(folder) / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        _env_file=None,
        rules_file=str(rules),
        database_url=args.database_url or f"sqlite+aiosqlite:///{folder}/drain.db",
        redis_url=args.redis_url,
        systeme_api_key="bench-key",
        systeme_api_url=sim_url,
        maton_api_key=None,
    )
    await upgrade_async(settings.database_url)
    await Redis.from_url(args.redis_url).flushdb()
    return settings


async def run(args: argparse.Namespace, folder: str, sim_url: str) -> None:
    settings = await fresh(args, folder, sim_url)
    noop_rate = report("arq no-op jobs", await baseline(args.redis_url, args.actions), args.actions)
    await backlog(settings, args.actions)
    seconds, done = await drain(settings)
    assert done == args.actions, f"{done} of {args.actions} actions ran"
    drain_rate = report("systeme-flow actions (tag, new contact)", seconds, done)
    print(f"{'ratio actions / no-op':<34} {drain_rate / noop_rate:9.3f}   (target >= 0.5)")


async def limited(args: argparse.Namespace, folder: str, sim_url: str) -> None:
    settings = await fresh(args, folder, sim_url)
    await backlog(settings, args.actions)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": args.redis_url,
        "SYSTEME_API_KEY": "bench-key",
        "SYSTEME_API_URL": sim_url,
        "RULES_FILE": settings.rules_file,
        "LOG_FORMAT": "json",
    }
    env.pop("MATON_API_KEY", None)
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--burst", "--no-migrate"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(args.workers)
    ]
    for worker in workers:
        worker.wait()
    seconds = time.perf_counter() - started
    async with httpx.AsyncClient(base_url=sim_url) as http:
        state = (await http.get("/_sim/state")).json()
    served = sum(1 for c in state["calls"] if c.get("status") != 429)
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(actions.c.status, sa.func.count()).group_by(actions.c.status))
        statuses: dict[str, int] = {status: count for status, count in rows}
    await engine.dispose()
    quota = args.limit / args.window
    print(f"{args.workers} workers, {args.actions} actions, quota {args.limit} requests / {args.window:g} s")
    rate = served / seconds
    print(f"{'achieved request rate':<34} {rate:9.1f}/s   ({rate / quota:.0%} of {quota:g}/s; target >= 90%)")
    print(f"{'429 answers received':<34} {state['throttled']:9d}     (target 0)")
    failed = args.actions - statuses.get("succeeded", 0)
    print(f"{'actions not succeeded':<34} {failed:9d}     (must be 0)   {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=None, help="default 1000, or 2000 with --limit")
    parser.add_argument("--limit", type=int, default=0, help="simulator quota: requests per window")
    parser.add_argument("--window", type=float, default=10.0, help="simulator quota window, seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    args.actions = args.actions or (2000 if args.limit else 1000)
    sim = ["-m", "app", "simulator", "--api-key", "bench-key"]
    if args.limit:
        sim += ["--rate-limit", str(args.limit), "--window", str(args.window)]
    with tempfile.TemporaryDirectory() as folder, server(sim) as url:
        asyncio.run((limited if args.limit else run)(args, folder, url))


if __name__ == "__main__":
    main()
