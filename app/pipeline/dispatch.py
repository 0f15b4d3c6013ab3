"""The seam between "planned" and "executing": arq jobs when Redis is configured, in-process tasks otherwise
(app/pipeline/embedded.py).

Dispatching is only ever a hint: the database decides who runs an action (see app.store.actions.claim), and a
sweep finds whatever a lost hint left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from arq.connections import ArqRedis, RedisSettings

from app.config import Settings
from app.store.models import utcnow

log = logging.getLogger(__name__)
# A job that has waited this long in Redis is dropped by arq; the sweep dispatches the action again.
JOB_EXPIRY = timedelta(hours=6)


class Dispatcher(Protocol):
    async def dispatch(self, items: Sequence[tuple[str, int]], *, at: datetime | None = None) -> None:
        """Hand runs, each named by one of its actions (action id, attempt number), to an executor, now or at `at`."""


async def enqueue(redis: ArqRedis, action_id: str, attempt: int, at: datetime | None = None) -> None:
    # One job id per attempt (and due time): arq refuses a second job under an id it still knows, so the same hint
    # from ingest and from the sweep collapses into one job.
    job_id = f"{action_id}:{attempt}" + (f"@{int(at.timestamp() * 1000)}" if at else "")
    await redis.enqueue_job(
        "run_actions",
        action_id,
        _job_id=job_id,
        _defer_until=at,
        _expires=((at - utcnow()) if at else timedelta(0)) + JOB_EXPIRY,
    )


class ArqDispatcher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def dispatch(self, items: Sequence[tuple[str, int]], *, at: datetime | None = None) -> None:
        for action_id, attempt in items:
            await enqueue(self.redis, action_id, attempt, at)


def redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url, "REDIS_URL is not set"
    return RedisSettings.from_dsn(settings.redis_url)
