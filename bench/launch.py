"""A seller's launch at the Systeme.io quota floor: today's learning mirror and a complete one, in the same run.

    python -m bench.launch [--mirror both|learning|complete] [--buyers 100] [--existing 0.7] [--sync-contacts 1000]
                           [--second 5] [--limit 10] [--window 1] [--workers 2] [--slot-wait SECONDS] [--verbose]

Each mirror mode (MIRROR_MODE for every process; both by default, one after the other) gets a fresh deployment with
the product's defaults: the API (`systeme-flow serve`) and WORKERS `systeme-flow worker` processes, Redis and a
throwaway PostgreSQL database, against the simulator limited to LIMIT requests per WINDOW seconds, and one more API
in embedded mode (SQLite) for its idle latency. The account holds SYNC_CONTACTS contacts before the launch (a share
EXISTING of the buyers, as a seller's leads are, made within the quota; the rest seeded in the simulator's state, so
they spend none); with the complete mirror, `systeme-flow sync` reads it first. Each purchase tags, enrolls and
adds to a community. A second account (its own simulator and quota, learning mirror) gets SECOND buyers during the
burst, one a second from one second in (tag and enroll). Prints one table, figure | learning | complete | target:
- the sync's requests and time;
- requests per scenario (new contact, existing contact, the same purchase again, a refund), as the simulator saw them;
- the burst of BUYERS buyers at once: requests per purchase for new and existing buyers and overall, 429s, drain
  time against the floor of this mix with a complete mirror (existing x 3 + new x 4 requests at the quota) and
  against the mode's own (x 6 + x 5 for learning), p50/p95 time to full access, the share of the drain after which
  half of the buyers had access;
- the second account's buyers: seconds from their webhook's 202 to the end of their last action;
- mirror misses; the first API call of an idle system after the 202, in Redis and in embedded mode; memory.
`--slot-wait 65` sets QUOTA_SLOT_WAIT_SECONDS=65: the behaviour before issue 20, a run sleeping in its worker slot
on its account's quota (the second account's buyers then wait behind the burst).
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa

from app.store.db import create_engine
from app.store.mirror import load_sync
from app.store.models import actions, api_calls
from bench.common import api, drop_database, rss_mb, service_env, simulator, throwaway_database, workers
from tests.factories import STRIPE_SECRET, stripe_checkout, stripe_headers, stripe_refund

KEY = "bench-launch-key"
ADMIN = "bench-launch-admin"
RULES = f"""
version: 1
accounts:
  coaching: {{ api_key: "{KEY}", api_url: "COACHING_URL" }}
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
  coaching: {{ type: stripe, secret: "{STRIPE_SECRET}", account: coaching }}
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
  - id: coaching-purchase
    on: coaching/checkout.session.completed
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - tag: Coaching client
      - enroll: {{ course: 101 }}
"""
TERMINAL = ("succeeded", "failed", "dead", "skipped", "rejected")
MODES = ("learning", "complete")
# The fewest requests a purchase takes in each mode, for a (new, existing) buyer: a burst's floor.
FLOOR = {"learning": (5, 6), "complete": (4, 3)}


@dataclass(frozen=True)
class Deployment:
    mode: str
    api: str  # Redis mode: the API, the workers and PostgreSQL
    embedded: str  # embedded mode: one process, SQLite
    sim: str  # the first account's simulator
    database_url: str
    embedded_db: str
    sync_env: dict[str, str]
    cwd: Path


class Launch:
    def __init__(self, api: str, sim: str, database_url: str) -> None:
        self.api, self.sim = api, sim
        self.engine = create_engine(database_url)
        self.http = httpx.AsyncClient(timeout=30)

    async def sim_state(self) -> dict[str, Any]:
        return (await self.http.get(f"{self.sim}/_sim/state")).json()  # type: ignore[no-any-return]

    async def post(self, event: dict[str, Any], source: str = "stripe") -> tuple[str, float]:
        body = json.dumps(event).encode()
        answer = await self.http.post(f"{self.api}/hooks/{source}", content=body, headers=stripe_headers(body))
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

    async def scenario(self, event: dict[str, Any], source: str = "stripe") -> int:
        before = len((await self.sim_state())["calls"])
        event_id, _ = await self.post(event, source)
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
    """`systeme-flow sync --full` as an operator runs it, once the account's contacts exist: a whole read, whatever
    the workers' own first sync (at their start) read before. Refused while theirs runs: asked again."""
    command = [sys.executable, "-m", "app", "sync", "--full", "--json"]
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            (report,) = json.loads(done.stdout)
            return report  # type: ignore[no-any-return]
        if "is being synced by the service" not in done.stderr or time.monotonic() > deadline:
            raise RuntimeError(f"sync failed: {done.stderr}")
        time.sleep(1)


async def seed(launch: Launch, args: argparse.Namespace, existing: int) -> None:
    """The account before the launch: one contact for the scenario, the burst's existing buyers, and leads."""
    for email in ["known@yopmail.com", *(f"buyer{n:03d}@yopmail.com" for n in range(existing))]:
        while True:  # within the simulator's quota, as the seller's own tools would be
            made = await launch.http.post(
                f"{launch.sim}/api/contacts",
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
        seeded = await launch.http.post(f"{launch.sim}/_sim/seed", json={"contacts": contacts})
        assert seeded.status_code == 200, seeded.text


async def burst(launch: Launch, args: argparse.Namespace, existing: int) -> dict[str, Any]:
    """BUYERS buyers at once, and the second account's buyers one a second from one second in."""
    state = await launch.sim_state()
    calls_before, throttled_before = len(state["calls"]), state["throttled"]
    started = time.time()
    posting = asyncio.gather(*[launch.post(stripe_checkout(f"buyer{n:03d}@yopmail.com")) for n in range(args.buyers)])
    second: list[tuple[str, float]] = []
    for n in range(args.second):
        await asyncio.sleep(1.0)
        second.append(await launch.post(stripe_checkout(f"coached{n}@yopmail.com"), "coaching"))
    posted = await posting
    ends = await launch.done_at([event_id for event_id, _ in second]) if second else {}
    waits = sorted(ends[event_id] - answered for event_id, answered in second)
    ends = await launch.done_at([event_id for event_id, _ in posted])
    state = await launch.sim_state()
    access = sorted(ends[event_id] - started for event_id, _ in posted)
    if args.verbose:
        # Where the quota went: requests per second of the burst.
        per_second: dict[int, int] = {}
        for at in state["times"][calls_before:]:
            per_second[int(at - started)] = per_second.get(int(at - started), 0) + 1
        print("requests per second:", [per_second.get(n, 0) for n in range(int(max(access)) + 1)])
    spent = await launch.requests_by_buyer([event_id for event_id, _ in posted])
    old = [spent.get(f"buyer{n:03d}@yopmail.com", 0) for n in range(existing)]
    new = [spent.get(f"buyer{n:03d}@yopmail.com", 0) for n in range(existing, args.buyers)]
    return {
        "per existing buyer": statistics.mean(old) if old else None,
        "per new buyer": statistics.mean(new) if new else None,
        "requests per purchase": (len(state["calls"]) - calls_before) / args.buyers,
        "429s": state["throttled"] - throttled_before,
        "drain": max(access),
        "p50": statistics.median(access),
        "p95": access[int(len(access) * 0.95) - 1],
        "second account waits": waits,
    }


async def measure(args: argparse.Namespace, at: Deployment) -> dict[str, Any]:
    launch = Launch(at.api, at.sim, at.database_url)
    existing = int(args.buyers * args.existing)
    figures: dict[str, Any] = {}
    try:
        await seed(launch, args, existing)
        if at.mode == "complete":
            before = len((await launch.sim_state())["calls"])
            figures["sync"] = sync(at.sync_env, at.cwd)
            figures["sync"]["seen by the simulator"] = len((await launch.sim_state())["calls"]) - before
        await launch.scenario(stripe_checkout("warm-up@yopmail.com"))  # the tag exists and its id is cached
        await launch.scenario(stripe_checkout("warm-up@yopmail.com"), "coaching")  # and the second account's
        figures["new contact"] = await launch.scenario(stripe_checkout("new@yopmail.com"))
        figures["existing contact"] = await launch.scenario(stripe_checkout("known@yopmail.com"))
        figures["again"] = await launch.scenario(stripe_checkout("new@yopmail.com"))
        figures["refund"] = await launch.scenario(stripe_refund("new@yopmail.com"))
        figures["idle, Redis"] = await launch.first_call_latency()
        figures["burst"] = await burst(launch, args, existing)
        if at.mode == "complete":
            synced = await load_sync(launch.engine, "default")
            figures["misses"] = synced.misses if synced is not None else None
        embedded = Launch(at.embedded, at.sim, at.embedded_db)
        try:
            figures["idle, embedded"] = await embedded.first_call_latency()
        finally:
            await embedded.close()
    finally:
        await launch.close()
    return figures


def deploy(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """One mode on a fresh deployment: Redis flushed, a new PostgreSQL database, new simulators and processes."""
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
    redis.Redis.from_url(redis_url).flushdb()
    database_url, name = asyncio.run(throwaway_database())
    try:
        with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
            cwd = Path(folder)
            quota = {"key": KEY, "limit": args.limit, "window": args.window}
            sim = stack.enter_context(simulator(cwd, **quota))
            coaching = stack.enter_context(simulator(cwd, **quota))
            (cwd / "rules.yaml").write_text(RULES.replace("COACHING_URL", coaching))
            slot = {"QUOTA_SLOT_WAIT_SECONDS": args.slot_wait} if args.slot_wait else {}
            env = service_env(cwd, sim, key=KEY, admin=ADMIN, MIRROR_MODE=mode, **slot)
            embedded_db = f"sqlite+aiosqlite:///{folder}/embedded.db"
            embedded, _ = stack.enter_context(api({**env, "DATABASE_URL": embedded_db}, cwd))
            redis_env = {**env, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
            api_url, api_process = stack.enter_context(api(redis_env, cwd))
            procs = stack.enter_context(workers(redis_env, cwd, args.workers))
            at = Deployment(mode, api_url, embedded, sim, database_url, embedded_db, redis_env, cwd)
            figures = asyncio.run(measure(args, at))
            figures["memory"] = [rss_mb(api_process.pid), *(rss_mb(p.pid) for p in procs)]
            return figures
    finally:
        asyncio.run(drop_database(name))


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({max(values):.0f})"


def column(f: dict[str, Any], args: argparse.Namespace, mode: str) -> list[str]:
    """One mode's cells, in the order of `rows`."""
    b, existing = f["burst"], int(args.buyers * args.existing)
    quota = args.limit / args.window
    mix = (existing * 3 + (args.buyers - existing) * 4) / quota
    new, old = FLOOR[mode]
    own = (existing * old + (args.buyers - existing) * new) / quota
    per = [b[f"per {kind} buyer"] for kind in ("new", "existing")]
    waits = b["second account waits"]
    done = f.get("sync")
    return [
        f"{done['requests']} requests, {done['seconds']:.1f} s" if done else "—",
        f"{f['new contact']} / {f['existing contact']}",
        f"{f['again']} / {f['refund']}",
        " / ".join("—" if v is None else f"{v:.2f}" for v in per) + f" / {b['requests per purchase']:.2f}",
        str(b["429s"]),
        f"{b['drain']:.1f} s: {mix / b['drain']:.2f} of {mix:.1f} s",
        f"{own / b['drain']:.2f} of {own:.1f} s",
        f"{b['p50']:.1f} s / {b['p95']:.1f} s: {b['p50'] / b['drain']:.2f}",
        f"{statistics.median(waits):.1f} s / {max(waits):.1f} s" if waits else "—",
        "—" if f.get("misses") is None else str(f["misses"]),
        f"{ms(f['idle, Redis'])} / {ms(f['idle, embedded'])}",
        f"{f['memory'][0]:.0f} / " + ", ".join(f"{mb:.0f}" for mb in f["memory"][1:]),
    ]


def report(found: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    existing = int(args.buyers * args.existing)
    quota = f"{args.limit} requests per {args.window:g} s"
    rows = [
        (f"the sync of the account ({args.sync_contacts} contacts): requests, time", "—"),
        ("requests: a new contact's purchase / an existing contact's needing all three", "4 / 3"),
        ("requests: the same purchase again / the refund of what was granted", "≤ 1 / ≤ 4"),
        (
            f"burst of {args.buyers} buyers ({existing} existing): requests per new / existing buyer / overall",
            "4 / 3 / ≤ 3.4",
        ),
        ("burst: answers 429", "0"),
        (
            f"burst drained in; against this mix's floor ({existing} × 3 + {args.buyers - existing} × 4 at {quota})",
            "≥ 0.9",
        ),
        (f"burst: against the mode's own floor (learning: {existing} × 6 + {args.buyers - existing} × 5)", "≥ 0.9"),
        ("time to full access, p50 / p95: share of the drain when half were served", "≤ 0.55"),
        (f"second account's buyer ({args.second}, one a second): served after its 202, median / max", "≤ 2 s"),
        ("mirror misses", "counted"),
        ("first API call after the 202, idle, ms, median (max) of 5: Redis / embedded", "≤ 50"),
        ("resident memory, MB: API / workers", "< 150"),
    ]
    modes = list(found)
    columns = {mode: column(found[mode], args, mode) for mode in modes}
    print(
        f"launch: {args.buyers} buyers ({existing} existing contacts), an account of {args.sync_contacts} contacts, "
        f"quota {quota}, {args.workers} workers"
        + (f", QUOTA_SLOT_WAIT_SECONDS={args.slot_wait}" if args.slot_wait else "")
    )
    print("| figure | " + " | ".join(modes) + " | target |")
    print("| --- " * (len(modes) + 2) + "|")
    for n, (figure, target) in enumerate(rows):
        print(f"| {figure} | " + " | ".join(columns[mode][n] for mode in modes) + f" | {target} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--mirror", choices=("both", *MODES), default="both", help="MIRROR_MODE (both: one after the other)"
    )
    parser.add_argument("--buyers", type=int, default=100)
    parser.add_argument("--existing", type=float, default=0.7, help="share of the buyers already contacts (0 to 1)")
    parser.add_argument("--sync-contacts", type=int, default=1000, help="contacts in the account before the launch")
    parser.add_argument("--second", type=int, default=5, help="buyers of the second account, one a second")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slot-wait", default="", help="QUOTA_SLOT_WAIT_SECONDS (default: the product's)")
    parser.add_argument("--verbose", action="store_true", help="print the burst's requests per second")
    args = parser.parse_args()
    found = {mode: deploy(args, mode) for mode in (MODES if args.mirror == "both" else (args.mirror,))}
    report(found, args)


if __name__ == "__main__":
    main()
