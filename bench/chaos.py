"""The chaos run: several replicas and workers on one PostgreSQL and Redis, each part killed under load.

    python -m bench.chaos [--events 2000] [--minutes 4] [--baseline | --no-faults] [--refunds-after-plans]

Starts its own PostgreSQL and Redis in a temporary folder (so it may restart them), two simulators (accounts
`default` and `b`, each with its own key and a quota of --limit requests per --window seconds), 2 API replicas
and 3 workers, then sends a stream of signed events over --minutes from three sources (Stripe on `default`, a
Standard Webhooks shop on `b`, a form): purchases, refunds (a quarter of them delivered before their purchase),
redeliveries, form posts. Senders behave like providers: what is not answered 2xx is sent again later, to either
replica. While it runs: a worker is SIGKILLed every --kill-every seconds and restarted, one API replica is
SIGKILLed and restarted, PostgreSQL is restarted once (fast shutdown), Redis once (no persistence: its data is
lost). A process that exits by itself is restarted too, as a supervisor would, and counted.

Then it waits until every action settles and checks both simulator accounts against what the events mean, and
prints: events acknowledged, effects checked, violations (each listed), time to settle after the last fault,
requests per event (and, with --baseline, the same stream on a fresh deployment without faults first). Exit
status 1 when there is a violation.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.chaos_check import Verdict, check, settle
from bench.chaos_cluster import Cluster, Service
from bench.chaos_stream import Delivery, Sent, plan, send


@dataclass
class Faults:
    """When each fault lands, in seconds after the stream starts (None: never)."""

    kill_every: float | None = 20.0
    replica_at: float | None = None
    replica_down: float = 3.0
    postgres_at: float | None = None
    redis_at: float | None = None
    log: list[tuple[float, str]] = field(default_factory=list)
    exits: Counter[str] = field(default_factory=Counter)
    last_end: float = 0.0  # monotonic time the last fault was over (its part started again)

    @classmethod
    def spread(cls, seconds: float, kill_every: float = 20.0) -> Faults:
        return cls(kill_every, replica_at=0.25 * seconds, postgres_at=0.45 * seconds, redis_at=0.65 * seconds)


@dataclass
class Run:
    events: int
    seconds: float
    faults: Faults | None
    early_refunds: bool = True
    refunds_after_plans: bool = False
    seed: int = 21
    limit: int = 20
    window: float = 1.0
    keep: bool = False


@dataclass
class Outcome:
    deliveries: list[Delivery]
    sent: Sent
    verdict: Verdict
    settle_seconds: float  # after the last fault, or after the last 2xx without faults
    after_last_ack: float  # settled this long after the last event's first 2xx
    faults: Faults | None
    folder: Path

    @property
    def requests_per_event(self) -> float:
        return self.verdict.calls / max(1, len(self.sent.acked))


async def _inject(cluster: Cluster, faults: Faults, started: float, until: float, lock: asyncio.Lock) -> None:
    """The fault schedule, and a supervisor that starts again any process that exited by itself."""
    plan_: list[tuple[float, str]] = []
    if faults.kill_every:
        plan_ += [(t, "worker") for t in _steps(faults.kill_every, until)]
    plan_ += [(t, name) for t, name in ((faults.replica_at, "replica"), (faults.postgres_at, "postgres"),
                                        (faults.redis_at, "redis")) if t is not None]  # fmt: skip
    plan_.sort()
    rng = random.Random(3)

    async def fault(name: str) -> None:
        async with lock:
            at = time.monotonic() - started
            if name == "worker":
                victim = rng.choice(cluster.workers)
                await asyncio.to_thread(victim.kill)
                await asyncio.to_thread(victim.start)
                name = f"SIGKILL {victim.name}"
            elif name == "replica":
                await asyncio.to_thread(cluster.replicas[0].kill)
                await asyncio.sleep(faults.replica_down)
                await asyncio.to_thread(cluster.replicas[0].start)
                name = f"SIGKILL {cluster.replicas[0].name}, {faults.replica_down:g} s down"
            elif name == "postgres":
                await asyncio.to_thread(cluster.postgres.restart)
                name = "PostgreSQL restart (fast)"
            else:
                await asyncio.to_thread(cluster.redis.restart)
                name = "Redis restart, data lost"
            faults.log.append((at, name))
            faults.last_end = time.monotonic()

    async def supervise() -> None:
        while True:
            await asyncio.sleep(1.0)
            async with lock:
                for service in [*cluster.replicas, *cluster.workers]:
                    if service.proc is not None and service.proc.poll() is not None:
                        faults.exits[service.name] += 1
                        await asyncio.to_thread(_restart, service)

    watcher = asyncio.create_task(supervise())
    try:
        for at, name in plan_:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await fault(name)
        await asyncio.Event().wait()  # the supervisor goes on until the run ends
    finally:
        watcher.cancel()


def _steps(every: float, until: float) -> list[float]:
    return [every * n for n in range(1, int(until // every) + 1)]


def _restart(service: Service) -> None:
    service.proc = None
    try:
        service.start()
    except RuntimeError:
        pass  # still failing (its database restarting): the next look tries again


def _planned_purchases(database_url: str) -> Callable[[Delivery], Awaitable[bool]]:
    """A hold for refunds: sent only once their purchase is judged (a seller refunding later, not at once)."""
    judged: set[str] = set()

    async def hold(d: Delivery) -> bool:
        if d.kind != "refund":
            return False
        purchase = d.provider_id.replace("_refund", "_purchase")
        if purchase not in judged:
            try:
                conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
                try:
                    rows = await conn.fetch("SELECT provider_id FROM events WHERE planned_at IS NOT NULL")
                finally:
                    await conn.close()
                judged.update(r["provider_id"] for r in rows)
            except (OSError, asyncpg.PostgresError):
                return True
        return purchase not in judged

    return hold


async def run(spec: Run, folder: Path) -> Outcome:
    """One run on a fresh deployment in `folder`: start, stream with faults, settle, check, stop."""
    cluster = Cluster(folder, limit=spec.limit, window=spec.window)
    await asyncio.to_thread(cluster.start)
    try:
        deliveries = plan(
            spec.events, spec.seconds, start=time.time(), seed=spec.seed, early_refunds=spec.early_refunds
        )
        started = time.monotonic()
        lock = asyncio.Lock()
        hold = _planned_purchases(cluster.postgres.url) if spec.refunds_after_plans else None
        chaos = (
            asyncio.create_task(_inject(cluster, spec.faults, started, spec.seconds, lock))
            if spec.faults is not None
            else None
        )
        try:
            sent = await send(deliveries, cluster.apis, started=started, hold=hold)
            if chaos is not None and spec.faults is not None:
                # Every scheduled fault has landed before the run may settle.
                while len(spec.faults.log) < _planned_count(spec.faults, spec.seconds):
                    if chaos.done():
                        chaos.result()  # the fault schedule failed: say why
                    await asyncio.sleep(0.5)
            async with lock:
                pass  # no fault half done
            quiet_from = max(sent.last_ack, spec.faults.last_end if spec.faults else 0.0)
            settled = await settle(cluster.postgres.url, len(sent.acked))
        finally:
            if chaos is not None:
                chaos.cancel()
        verdict = await check(cluster.postgres.url, dict(zip(("default", "b"), cluster.sims, strict=True)), sent.acked)
        for status, count in sent.statuses.items():
            if status >= 500 and status != 503:
                verdict.fail(f"{count} deliveries answered {status} (an outage must answer 503)")
        return Outcome(deliveries, sent, verdict, settled - quiet_from, settled - sent.last_ack, spec.faults, folder)
    finally:
        await asyncio.to_thread(cluster.stop)


def _planned_count(faults: Faults, seconds: float) -> int:
    scheduled = [faults.replica_at, faults.postgres_at, faults.redis_at]
    return len(_steps(faults.kill_every, seconds) if faults.kill_every else []) + sum(t is not None for t in scheduled)


def report(outcome: Outcome, name: str) -> None:
    kinds = Counter(d.kind for d in outcome.sent.acked.values())
    sent = outcome.sent
    print(f"{name}: {len(outcome.deliveries)} events planned to send, {len(sent.acked)} acknowledged "
          f"({', '.join(f'{n} {k}s' for k, n in sorted(kinds.items()))}); {sent.attempts} attempts, "
          f"answers {dict(sorted(sent.statuses.items()))}, {sent.errors} without an answer")  # fmt: skip
    if outcome.faults is not None:
        for at, what in outcome.faults.log:
            print(f"  fault at {at:6.1f} s: {what}")
        if outcome.faults.exits:
            print(f"  processes that exited by themselves (restarted): {dict(outcome.faults.exits)}")
    v = outcome.verdict
    print(f"  effects checked: {v.checked}; actions run with the 'out of order' note: {v.out_of_order}")
    per_event = outcome.requests_per_event
    print(f"  requests to Systeme.io: {v.calls} ({per_event:.2f} per acknowledged event), 429s {v.throttled}")
    what = "the last fault" if outcome.faults is not None else "the last 2xx"
    print(f"  settled {outcome.settle_seconds:.1f} s after {what} ({outcome.after_last_ack:.1f} s after the last 2xx)")
    print(f"  violations: {len(v.violations)} ({v.early} of buyers whose refund arrived before their purchase)")
    for line in v.violations:
        print(f"    - {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--limit", type=int, default=20, help="simulator quota: requests per window, per account")
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--seed", type=int, default=21)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--baseline", action="store_true", help="first the same stream without faults, to compare")
    mode.add_argument("--no-faults", action="store_true", help="only the stream without faults")
    parser.add_argument("--no-early-refunds", action="store_true", help="no refund delivered before its purchase")
    parser.add_argument("--refunds-after-plans", action="store_true", help="send a refund once its purchase is judged")
    parser.add_argument("--keep", action="store_true", help="keep the folder (process logs, PostgreSQL's data)")
    args = parser.parse_args()
    seconds = args.minutes * 60

    def spec(faults: Faults | None) -> Run:
        return Run(args.events, seconds, faults, not args.no_early_refunds, args.refunds_after_plans, args.seed,
                   args.limit, args.window)  # fmt: skip

    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    folder.chmod(0o755)  # PostgreSQL runs as its own user when this runs as root
    outcomes = []
    if args.baseline or args.no_faults:
        outcomes.append(("without faults", asyncio.run(run(spec(None), folder / "baseline"))))
        report(outcomes[-1][1], outcomes[-1][0])
    if not args.no_faults:
        faults = Faults.spread(seconds, args.kill_every)
        outcomes.append(("with faults", asyncio.run(run(spec(faults), folder / "chaos"))))
        report(outcomes[-1][1], outcomes[-1][0])
    if len(outcomes) == 2:
        base, chaos = outcomes[0][1], outcomes[1][1]
        ratio = chaos.requests_per_event / base.requests_per_event
        print(f"requests per event: {chaos.requests_per_event:.2f} with faults against "
              f"{base.requests_per_event:.2f} without ({ratio:.2f}x)")  # fmt: skip
    if args.keep:
        print(f"folder: {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if any(o.verdict.violations for _, o in outcomes) else 0)


if __name__ == "__main__":
    main()
