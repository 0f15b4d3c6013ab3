"""The seam between "planned" and "executing": arq jobs when Redis is configured, in-process tasks otherwise
(app/pipeline/embedded.py).

Dispatching is only ever a hint: the database decides who runs an action (see app.store.actions.claim), and a
sweep finds whatever a lost hint left behind.

Priority in arq: its queue is a sorted set whose score is both when a job may start and, among the ready ones, which
starts first. A hint for now is scored earlier by its priority (`_HEAD_START`), so a high-priority run starts before
a backlog of normal ones up to that old; a hint for later (a retry, a run that gave its slot back for the quota)
cannot start before its time, so only a few milliseconds order those due at the same moment (`_TIE_BREAK`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus

from app.config import Settings
from app.store.models import utcnow
from app.store.statuses import Priority

log = logging.getLogger(__name__)
# A job that has waited this long in Redis is dropped by arq; the sweep dispatches the action again.
JOB_EXPIRY = timedelta(hours=6)
_HEAD_START = {Priority.HIGH: timedelta(minutes=20), Priority.NORMAL: timedelta(minutes=10), Priority.LOW: timedelta(0)}
_TIE_BREAK = {
    Priority.HIGH: timedelta(0),
    Priority.NORMAL: timedelta(milliseconds=50),
    Priority.LOW: timedelta(milliseconds=150),
}


class Dispatcher(Protocol):
    async def dispatch(
        self, items: Sequence[tuple[str, int]], *, at: datetime | None = None, priority: Priority = Priority.NORMAL
    ) -> None:
        """Hand runs, each named by one of its actions (action id, attempt number), to an executor, now or at `at`,
        ahead of lower `priority` work waiting there."""


async def enqueue(
    redis: ArqRedis, action_id: str, attempt: int, at: datetime | None = None, priority: Priority = Priority.NORMAL
) -> None:
    # One job id per attempt (and due time): arq refuses a second job under an id it still knows, so the same hint
    # from ingest and from the sweep collapses into one job.
    job_id = f"{action_id}:{attempt}" + (f"@{int(at.timestamp() * 1000)}" if at else "")
    now = utcnow()
    # The score orders the queue (see above); the expiry is counted from now either way.
    score = at + _TIE_BREAK[priority] if at is not None else now - _HEAD_START[priority]
    expires = max(score - now, timedelta(0)) + JOB_EXPIRY
    job = await redis.enqueue_job("run_actions", action_id, _job_id=job_id, _defer_until=score, _expires=expires)
    if job is None and at is None and await Job(job_id, redis).status() == JobStatus.in_progress:
        # A worker took this job, yet the run is due again (a claimed run holds a lease and is not): that worker
        # died before claiming it. arq hands its job out again only when the in-progress key expires, about five
        # minutes on, so a second job under a fresh id (one a minute at most) runs it now. Were the worker alive
        # after all, one of the two jobs loses the claim and ends at once.
        fresh = f"{job_id}~{int(now.timestamp()) // 60}"
        await redis.enqueue_job("run_actions", action_id, _job_id=fresh, _defer_until=score, _expires=expires)


class ArqDispatcher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def dispatch(
        self, items: Sequence[tuple[str, int]], *, at: datetime | None = None, priority: Priority = Priority.NORMAL
    ) -> None:
        for action_id, attempt in items:
            await enqueue(self.redis, action_id, attempt, at, priority)


def redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url, "REDIS_URL is not set"
    return RedisSettings.from_dsn(settings.redis_url)
