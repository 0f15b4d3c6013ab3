"""A seller's launch at the Systeme.io quota floor: the service's defaults, real processes, the simulator's quota.

    python -m bench.launch [--buyers 60] [--limit 10] [--window 1] [--workers 2] [--existing 0.7] [--mirror complete]
                           [--sync-contacts 1000]

API (`systeme-flow serve`), N `systeme-flow worker` processes, Redis and a throwaway PostgreSQL database, against the
simulator limited to LIMIT requests per WINDOW seconds. Each purchase tags, enrolls and adds to a community. Prints:
- requests per scenario (new contact, existing contact, the same purchase again, a refund), as the simulator saw them;
- the burst of BUYERS buyers at once (a share EXISTING of them contacts of the account already, as a seller's leads
  are): drain time against the floor (BUYERS x 5 requests at the quota), p50/p95 time to full access, the share of
  the drain after which half of the buyers had access, requests per purchase for new and existing buyers, 429s;
- with `--mirror complete` (MIRROR_MODE for every process): `systeme-flow sync` run once the contacts exist, its
  requests and time, and the mirror misses; with `--sync-contacts N`, the account holds N contacts when it runs
  (leads seeded in the simulator's state, so they spend no quota): the sync's figure for an account of that size;
- the first API call of an idle system after the webhook's 202, in Redis mode and in embedded mode;
- resident memory of the API and worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import sqlalchemy as sa

from app.store.db import create_engine
from app.store.migrate import upgrade_async
from app.store.mirror import load_sync
from app.store.models import actions, api_calls
from bench.common import ROOT, free_port
from tests.factories import STRIPE_SECRET, stripe_checkout, stripe_headers, stripe_refund

KEY = "bench-launch-key"
ADMIN = "bench-launch-admin"
RULES = f"""
version: 1
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
rules:
  - id: purchase
    on: stripe/checkout.session.completed
    contact:
      email: "{{{{ event.data.object.customer_details.email }}}}"
      first_name: "{{{{ event.data.object.customer_details.name | first_word }}}}"
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101 }}
      - add_to_community: {{ community: 7 }}
  - id: refund
    on: stripe/charge.refunded
    contact: {{ email: "{{{{ event.data.object.billing_details.email }}}}" }}
    actions:
      - untag: Masterclass buyer
      - unenroll: {{ course: 101 }}
      - remove_from_community: {{ community: 7 }}
"""
TERMINAL = ("succeeded", "failed", "dead", "skipped", "rejected")


@contextmanager
def process(
    args: list[str], env: dict[str, str], cwd: Path, *, health: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while health is not None:
            try:
                httpx.get(health, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args[0]} did not start") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Launch:
    def __init__(self, api: str, sim: str, database_url: str) -> None:
        self.api, self.sim = api, sim
        self.engine = create_engine(database_url)
        self.http = httpx.AsyncClient(timeout=30)

    async def sim_state(self) -> dict[str, Any]:
        return (await self.http.get(f"{self.sim}/_sim/state")).json()  # type: ignore[no-any-return]

    async def post(self, event: dict[str, Any]) -> tuple[str, float]:
        body = json.dumps(event).encode()
        answer = await self.http.post(f"{self.api}/hooks/stripe", content=body, headers=stripe_headers(body))
        assert answer.status_code == 202, answer.text
        return str(answer.json()["event_id"]), time.time()

    async def done_at(self, event_ids: list[str], timeout: float = 600) -> dict[str, float]:
        """When each event's last action ended (Unix seconds), once every action of every event has."""
        deadline = time.monotonic() + timeout
        while True:
            async with self.engine.connect() as conn:
                rows = list(
                    await conn.execute(
                        sa.select(actions.c.event_id, actions.c.status, actions.c.updated_at).where(
                            actions.c.event_id.in_(event_ids)
                        )
                    )
                )
            if rows and all(r.status in TERMINAL for r in rows) and len({r.event_id for r in rows}) == len(event_ids):
                ends: dict[str, float] = {}
                for r in rows:
                    ends[r.event_id] = max(ends.get(r.event_id, 0.0), r.updated_at.timestamp())
                return ends
            if time.monotonic() > deadline:
                raise RuntimeError("the events did not finish in time")
            await asyncio.sleep(0.1)

    async def scenario(self, event: dict[str, Any]) -> int:
        before = len((await self.sim_state())["calls"])
        event_id, _ = await self.post(event)
        await self.done_at([event_id])
        return len((await self.sim_state())["calls"]) - before

    async def first_call_latency(self, samples: int = 5) -> list[float]:
        """Milliseconds from the 202 to the first API request about that buyer, on an idle system."""
        found = []
        for _ in range(samples):
            email = f"idle-{uuid.uuid4().hex[:8]}@yopmail.com"
            sent = time.time()
            event_id, answered = await self.post(stripe_checkout(email))
            await self.done_at([event_id])
            state = await self.sim_state()
            # Its find (the email in the query); with a complete mirror there is none, and its create comes first.
            at = next(
                t
                for c, t in zip(state["calls"], state["times"], strict=True)
                if email.split("@")[0] in c["query"]
                or (c["method"] == "POST" and c["path"] == "/api/contacts" and t >= sent)
            )
            found.append((at - answered) * 1000)
            await asyncio.sleep(0.3)
        return found

    async def requests_by_buyer(self, event_ids: list[str]) -> dict[str, int]:
        """API requests the actions of these events made, by the buyer's email (from the runs' own call logs)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(actions.c.contact_email, sa.func.count())
                .select_from(api_calls.join(actions, api_calls.c.action_id == actions.c.id))
                .where(actions.c.event_id.in_(event_ids))
                .group_by(actions.c.contact_email)
            )
            return {str(email): int(count) for email, count in rows}

    async def close(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()


def sync(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """`systeme-flow sync` as an operator runs it, once the account's contacts exist."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "sync", "--json"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"sync failed: {done.stderr}")
    (report,) = json.loads(done.stdout)
    return report  # type: ignore[no-any-return]


async def measure(args: argparse.Namespace, api: str, sim: str, embedded_api: str, database_url: str) -> dict[str, Any]:
    launch = Launch(api, sim, database_url)
    figures: dict[str, Any] = {}
    try:
        # The account's contacts before the launch: one for the scenario, and the burst's existing buyers.
        existing = int(args.buyers * args.existing)
        for email in ["known@yopmail.com", *(f"buyer{n:03d}@yopmail.com" for n in range(existing))]:
            while True:  # within the simulator's quota, as the seller's own tools would be
                made = await launch.http.post(
                    f"{sim}/api/contacts",
                    headers={"X-API-Key": KEY},
                    json={"email": email, "fields": [{"slug": "first_name", "value": "Ada"}]},
                )
                if made.status_code != 429:
                    assert made.status_code == 201, made.text
                    break
                await asyncio.sleep(0.2)
        leads = max(0, args.sync_contacts - 1 - existing)
        if leads:
            # The rest of the account: leads made directly in the simulator's state (no quota, no webhook).
            contacts = [{"email": f"lead{n:05d}@yopmail.com"} for n in range(leads)]
            seeded = await launch.http.post(f"{sim}/_sim/seed", json={"contacts": contacts})
            assert seeded.status_code == 200, seeded.text
        if args.mirror == "complete":
            before = len((await launch.sim_state())["calls"])
            figures["sync"] = sync(args.sync_env, args.cwd)
            figures["sync"]["seen by the simulator"] = len((await launch.sim_state())["calls"]) - before
        await launch.scenario(stripe_checkout("warm-up@yopmail.com"))  # the tag exists and its id is cached
        figures["new contact"] = await launch.scenario(stripe_checkout("new@yopmail.com"))
        figures["existing contact, all three needed"] = await launch.scenario(stripe_checkout("known@yopmail.com"))
        figures["the same purchase again"] = await launch.scenario(stripe_checkout("new@yopmail.com"))
        figures["refund of what was granted"] = await launch.scenario(stripe_refund("new@yopmail.com"))
        figures["idle first call, Redis"] = await launch.first_call_latency()

        state = await launch.sim_state()
        calls_before, throttled_before = len(state["calls"]), state["throttled"]
        buyers = [stripe_checkout(f"buyer{n:03d}@yopmail.com") for n in range(args.buyers)]
        started = time.time()
        posted = await asyncio.gather(*[launch.post(b) for b in buyers])
        ends = await launch.done_at([event_id for event_id, _ in posted])
        state = await launch.sim_state()
        access = sorted(ends[event_id] - started for event_id, _ in posted)
        burst_times = sorted(state["times"][calls_before:])
        if args.verbose:
            # Where the quota went: requests per second of the burst, and the gaps between the simulator's windows.
            per_second: dict[int, int] = {}
            for at in burst_times:
                per_second[int(at - started)] = per_second.get(int(at - started), 0) + 1
            print("requests per second:", [per_second.get(n, 0) for n in range(int(max(access)) + 1)])
        spent = await launch.requests_by_buyer([event_id for event_id, _ in posted])
        old = [spent.get(f"buyer{n:03d}@yopmail.com", 0) for n in range(existing)]
        new = [spent.get(f"buyer{n:03d}@yopmail.com", 0) for n in range(existing, args.buyers)]
        figures["burst"] = {
            "existing buyers": existing,
            "per existing buyer": statistics.mean(old) if old else None,
            "per new buyer": statistics.mean(new) if new else None,
            "drain": max(access),
            "floor": args.buyers * 5 / (args.limit / args.window),
            # A complete mirror's floor for this mix: 3 requests per existing buyer, 4 per new one.
            "mirror floor": (existing * 3 + (args.buyers - existing) * 4) / (args.limit / args.window),
            "p50": statistics.median(access),
            "p95": access[int(len(access) * 0.95) - 1],
            "requests per purchase": (len(state["calls"]) - calls_before) / args.buyers,
            "429s": state["throttled"] - throttled_before,
        }
        if args.mirror == "complete":
            synced = await load_sync(launch.engine, "default")
            figures["misses"] = synced.misses if synced is not None else None
        embedded = Launch(embedded_api, sim, args.embedded_db)
        try:
            figures["idle first call, embedded"] = await embedded.first_call_latency()
        finally:
            await embedded.close()
    finally:
        await launch.close()
    return figures


def report(figures: dict[str, Any], rss: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"launch: {args.buyers} buyers ({int(args.buyers * args.existing)} existing contacts), quota {args.limit} "
        f"requests per {args.window:g} s, {args.workers} workers, mirror {args.mirror}"
    )
    complete = args.mirror == "complete"
    if complete:
        done = figures["sync"]
        print(
            f"  sync: {done['contacts_read']} contacts read, {done['requests']} requests "
            f"({done['seen by the simulator']} seen by the simulator) in {done['seconds']:.1f} s"
        )
    for name, target in (
        ("new contact", 4 if complete else 5),
        ("existing contact, all three needed", 3 if complete else 6),
        ("the same purchase again", 1),
        ("refund of what was granted", 4),
    ):
        print(f"  requests, {name:<36} {figures[name]:>4}   (target <= {target})")
    burst = figures["burst"]
    print(f"  burst: requests per purchase {burst['requests per purchase']:.2f}, 429s {burst['429s']}")
    for kind in ("new", "existing"):
        value = burst[f"per {kind} buyer"]
        if value is not None:
            print(f"  burst: requests per {kind} buyer {value:.2f}")
    if complete:
        print(
            f"  burst: against the complete mirror's floor of this mix {burst['mirror floor']:.1f} s: "
            f"{burst['mirror floor'] / burst['drain']:.2f} of it (target >= 0.9)"
        )
        print(f"  mirror misses: {figures.get('misses', 0)}")
    print(
        f"  burst: drained in {burst['drain']:.1f} s, floor {burst['floor']:.1f} s: "
        f"{burst['floor'] / burst['drain']:.2f} of the floor (target >= 0.9)"
    )
    print(
        f"  burst: time to full access p50 {burst['p50']:.1f} s, p95 {burst['p95']:.1f} s; half the buyers served "
        f"after {burst['p50'] / burst['drain']:.2f} of the drain (target <= 0.55)"
    )
    for mode in ("Redis", "embedded"):
        values = figures[f"idle first call, {mode}"]
        print(
            f"  idle: first API call after the 202, {mode:<8} median {statistics.median(values):5.1f} ms, "
            f"max {max(values):5.1f} ms (target <= 50)"
        )
    print("  memory: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()) + " (target < 150 MB each)")


async def throwaway_database() -> tuple[str, str]:
    admin_url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"sf_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    await upgrade_async(url)
    return url, name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buyers", type=int, default=60)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--existing", type=float, default=0.0, help="share of the buyers already contacts (0 to 1)")
    parser.add_argument("--mirror", choices=("learning", "complete"), default="learning", help="MIRROR_MODE")
    parser.add_argument(
        "--sync-contacts", type=int, default=0, help="contacts in the account at the sync (--mirror complete)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the burst's requests per second")
    args = parser.parse_args()
    if args.sync_contacts and args.mirror != "complete":
        parser.error("--sync-contacts measures the complete mirror's sync: add --mirror complete")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
    redis.Redis.from_url(redis_url).flushdb()
    database_url, name = asyncio.run(throwaway_database())
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        (cwd / "rules.yaml").write_text(RULES)
        args.embedded_db = f"sqlite+aiosqlite:///{folder}/embedded.db"
        sim_port, api_port, embedded_port = free_port(), free_port(), free_port()
        sim = f"http://127.0.0.1:{sim_port}"
        base = {k: v for k, v in os.environ.items() if k not in ("MATON_API_KEY", "REDIS_URL", "DATABASE_URL")}
        env = {
            **base,
            "SYSTEME_API_KEY": KEY,
            "SYSTEME_API_URL": sim,
            "RULES_FILE": str(cwd / "rules.yaml"),
            "ADMIN_TOKEN": ADMIN,
            "LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT),
            "MIRROR_MODE": args.mirror,
        }
        redis_env = {**env, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        embedded_env = {**env, "DATABASE_URL": args.embedded_db}
        args.sync_env, args.cwd = redis_env, cwd
        sim_args = ["simulator", "--api-key", KEY, "--rate-limit", str(args.limit), "--window", str(args.window)]
        with (
            process([*sim_args, "--port", str(sim_port)], env, cwd, health=f"{sim}/_sim/state"),
            process(
                ["serve", "--port", str(api_port)], redis_env, cwd, health=f"http://127.0.0.1:{api_port}/healthz"
            ) as api,
            process(
                ["serve", "--port", str(embedded_port)],
                embedded_env,
                cwd,
                health=f"http://127.0.0.1:{embedded_port}/healthz",
            ),
        ):
            workers = [process(["worker", "--no-migrate"], redis_env, cwd, health=None) for _ in range(args.workers)]
            procs = [w.__enter__() for w in workers]
            try:
                figures = asyncio.run(
                    measure(
                        args, f"http://127.0.0.1:{api_port}", sim, f"http://127.0.0.1:{embedded_port}", database_url
                    )
                )
                rss = {"api": rss_mb(api.pid), **{f"worker {n + 1}": rss_mb(p.pid) for n, p in enumerate(procs)}}
            finally:
                for w in workers:
                    w.__exit__(None, None, None)
    asyncio.run(drop_database(name))
    report(figures, rss, args)


if __name__ == "__main__":
    main()
