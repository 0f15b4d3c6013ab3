"""Ingest throughput: signed Stripe events through `POST /hooks/stripe` vs a bare JSON endpoint, same run.

    python -m bench.ingest [--events 3000] [--concurrency 32] [--rounds 1] [--database-url URL] [--redis-url URL]

The service runs as `systeme-flow serve` (one process, embedded SQLite by default, dry run so no outgoing calls),
so the figure covers signature check, rules planning and the durable write before the 202.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.store.db import create_engine
from app.store.models import actions as sa_actions
from app.store.models import events as sa_events
from bench.common import cpu_seconds, load, report, serving
from tests.factories import RULES, stripe_checkout, stripe_headers

Requests = list[tuple[str, bytes, dict[str, str]]]


def signed_events(count: int) -> Requests:
    requests = []
    for n in range(count):
        body = json.dumps(stripe_checkout(f"buyer{n}@yopmail.com", event_id=f"evt_{uuid.uuid4().hex}")).encode()
        requests.append(("/hooks/stripe", body, stripe_headers(body)))
    return requests


def service_env(folder: Path, database_url: str | None, redis_url: str | None = None) -> dict[str, str]:
    """`serve` on the test rules in `folder`, dry run, JSON logs; a fresh SQLite file unless a URL is given.

    Without `redis_url` the service runs the (dry) actions itself, as `serve` does by default; with it, it hands
    them to arq on that Redis (no worker is started, so they wait there).
    """
    (folder / "rules.yaml").write_text(RULES)
    env = {
        "DATABASE_URL": database_url or f"sqlite+aiosqlite:///{folder}/bench.db",
        "RULES_FILE": str(folder / "rules.yaml"),
        "MATON_API_KEY": "",
        "SYSTEME_API_KEY": "",
        "REDIS_URL": redis_url or "",
        "LOG_FORMAT": "json",
    }
    # Empty strings would count as set keys; drop them so the service runs dry.
    return {k: v for k, v in env.items() if v} | {"PYTHONWARNINGS": "ignore"}


def postgres_cpu(database_url: str | None) -> dict[int, float]:
    """CPU used so far by each PostgreSQL backend serving the benchmark's database (none for SQLite)."""
    if not database_url or not database_url.startswith("postgres"):
        return {}
    url = make_url(database_url)
    query = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"

    async def pids() -> list[int]:
        connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            return [row["pid"] for row in await connection.fetch(query, url.database)]
        finally:
            await connection.close()

    found = {}
    for pid in asyncio.run(pids()):
        with contextlib.suppress(OSError):  # on another machine, or gone
            found[pid] = cpu_seconds(pid)
    return found


def measure(
    url: str, pid: int, requests: Requests, concurrency: int, name: str, database_url: str | None = None
) -> tuple[float, dict[int, int]]:
    """One load after a warm-up: prints rate, p50/p99 and the server's CPU per request (PostgreSQL's backends too,
    when they run on this machine); returns (rate, statuses)."""
    asyncio.run(load(url, signed_events(200), concurrency=concurrency))
    cpu, backends = cpu_seconds(pid), postgres_cpu(database_url)
    seconds, latencies, statuses = asyncio.run(load(url, requests, concurrency=concurrency))
    rate = report(name, seconds, len(requests), latencies, cpu_seconds(pid) - cpu)
    after = postgres_cpu(database_url)
    if after:
        used = sum(after.values()) - sum(backends.get(p, 0.0) for p in after)
        print(f"{'  its PostgreSQL backends':<34} {'':>41}   server CPU {used / len(requests) * 1e6:5.0f} µs each")
    return rate, statuses


def follow_up(database_url: str, answered_in: float, count: int, actions: bool) -> None:
    """What the answers left to do: how long after the last answer every event was planned, the rate of answering
    and planning together, and (when the service runs them) how long until every action ran."""

    async def watch() -> tuple[float | None, float]:
        engine = create_engine(database_url)
        started = time.monotonic()
        planned_after: float | None = None
        try:
            while time.monotonic() - started < 600:
                async with engine.connect() as conn:
                    unplanned = await conn.scalar(sa.select(sa.func.count()).where(sa_events.c.planned_at.is_(None)))
                    waiting = await conn.scalar(
                        sa.select(sa.func.count()).where(sa_actions.c.status.in_(("pending", "running")))
                    )
                if not unplanned and planned_after is None:
                    planned_after = time.monotonic() - started
                if planned_after is not None and (not actions or not waiting):
                    break
                await asyncio.sleep(0.05)
        finally:
            await engine.dispose()
        return planned_after, time.monotonic() - started

    planned_after, settled_after = asyncio.run(watch())
    planned = planned_after if planned_after is not None else float("nan")
    print(
        f"{'  then':<34} every event planned {planned:5.2f} s after the last answer: "
        f"{count / (answered_in + planned):7.1f} events/s answered and planned"
        + (f"; every action run {settled_after:5.1f} s after" if actions else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="alternate bare and systeme-flow this many times")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file each round")
    parser.add_argument("--redis-url", default=None, help="enqueue actions to arq here instead of running them")
    args = parser.parse_args()

    ratios = []
    with serving(["-m", "bench.bare"]) as (bare_url, bare_process):
        for round_ in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_ + 1}")
            requests = signed_events(args.events)
            bare, _ = measure(bare_url, bare_process.pid, requests, args.concurrency, "bare FastAPI (parse JSON only)")
            with tempfile.TemporaryDirectory() as folder:
                env = service_env(Path(folder), args.database_url, args.redis_url)
                with serving(["-m", "app", "serve"], env=env, cwd=Path(folder)) as (url, process):
                    ingest, statuses = measure(
                        url,
                        process.pid,
                        requests,
                        args.concurrency,
                        "systeme-flow POST /hooks/stripe",
                        args.database_url,
                    )
                    follow_up(env["DATABASE_URL"], len(requests) / ingest, len(requests), not args.redis_url)
            assert statuses == {202: len(requests)}, statuses
            ratios.append(ingest / bare)
            print(f"{'ratio ingest / bare':<34} {ingest / bare:9.2f}   (target >= 0.5)")
    if len(ratios) > 1:
        print(f"{'ratio over the rounds':<34} {min(ratios):9.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
