"""Ingest throughput: signed Stripe events through `POST /hooks/stripe` vs a bare JSON endpoint, same run.

    python -m bench.ingest [--events 3000] [--concurrency 32] [--database-url URL]

The service runs as `systeme-flow serve` (one process, embedded SQLite by default, dry run so no outgoing calls),
so the figure covers signature check, rules planning and the durable write before the 202.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from bench.common import load, report, server
from tests.factories import RULES, stripe_checkout, stripe_headers


def signed_events(count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    requests = []
    for n in range(count):
        body = json.dumps(stripe_checkout(f"buyer{n}@example.com", event_id=f"evt_{uuid.uuid4().hex}")).encode()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", default=None, help="enqueue actions to arq here instead of running them")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        env = service_env(Path(folder), args.database_url, args.redis_url)
        requests = signed_events(args.events)
        warmup = signed_events(200)

        with server(["-m", "bench.bare"]) as url:
            asyncio.run(load(url, warmup, concurrency=args.concurrency))
            seconds, latencies, _ = asyncio.run(load(url, requests, concurrency=args.concurrency))
            bare = report("bare FastAPI (parse JSON only)", seconds, len(requests), latencies)

        with server(["-m", "app", "serve"], env=env, cwd=Path(folder)) as url:
            asyncio.run(load(url, warmup, concurrency=args.concurrency))
            seconds, latencies, statuses = asyncio.run(load(url, requests, concurrency=args.concurrency))
            ingest = report("systeme-flow POST /hooks/stripe", seconds, len(requests), latencies)
        assert statuses == {202: len(requests)}, statuses
    print(f"{'ratio ingest / bare':<34} {ingest / bare:9.2f}   (target >= 0.5)")


if __name__ == "__main__":
    main()
