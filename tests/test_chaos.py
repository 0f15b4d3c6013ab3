"""The chaos run in small (bench/chaos.py): two API replicas and three workers on their own PostgreSQL and Redis,
two Systeme.io accounts (simulators with a quota), a few hundred signed events from three sources, and one of each
fault while they flow: a worker SIGKILLed, an API replica SIGKILLed, PostgreSQL restarted (fast shutdown), Redis
restarted with its data lost. Nothing acknowledged may be lost, left unrun or applied twice.

Some refunds arrive before their purchase, and the others are sent 3 to 20 s after it to either replica, whether
or not the purchase is judged yet: the final state is still what the events mean in event time."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.chaos import Faults, Run, run


async def test_nothing_acknowledged_is_lost_or_doubled_when_each_part_is_killed_under_load() -> None:
    folder = Path(tempfile.mkdtemp(prefix="sf-chaos-"))
    folder.chmod(0o755)  # PostgreSQL runs as its own user when the tests run as root
    faults = Faults(kill_every=32.0, replica_at=6.0, postgres_at=14.0, redis_at=22.0)
    spec = Run(events=240, seconds=40.0, faults=faults)
    try:
        outcome = await run(spec, folder / "run")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    kinds = [what.split(" ")[0] for _, what in faults.log]
    assert sorted(kinds) == ["PostgreSQL", "Redis", "SIGKILL", "SIGKILL"], faults.log
    # Every event was acknowledged in the end (senders retry what was not), and each was checked.
    assert {d.key for d in outcome.deliveries} == set(outcome.sent.acked)
    assert outcome.verdict.violations == []
    kinds_sent = {d.kind for d in outcome.sent.acked.values()}
    assert kinds_sent == {"purchase", "refund", "form"}
    sent_at = {(d.email, d.kind): d.send_at for d in outcome.deliveries}
    early = [
        email for email, kind in sent_at if kind == "refund" and sent_at[email, "refund"] < sent_at[email, "purchase"]
    ]
    assert early  # the ordering case is in the stream
    assert outcome.verdict.checked > len(outcome.sent.acked)
