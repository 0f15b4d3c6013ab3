"""arq WorkerSettings: `arq workers.settings.WorkerSettings` or `systeme-flow worker`."""

from __future__ import annotations

from typing import Any, ClassVar

from arq import cron
from arq.connections import RedisSettings

from app.config import get_settings
from app.health import WORKER_HEARTBEAT_SECONDS, worker_health_key
from app.pipeline.dispatch import redis_settings
from app.pipeline.service import close_pipeline, worker_pipeline
from workers.tasks import mirror_sync_job, run_actions, sweep_job, upkeep_job


async def startup(ctx: dict[str, Any]) -> None:
    # Tests hand their own Settings in through Worker(ctx=...); a deployed worker reads the environment.
    settings = ctx.setdefault("settings", get_settings())
    # One client per account, each with one quota for every worker: paced through Redis, fed by each answer's
    # X-RateLimit-* headers. The accounts come from the rules file, read again when it changes (see the sweep).
    ctx["pipeline"] = await worker_pipeline(settings, ctx["redis"])


async def shutdown(ctx: dict[str, Any]) -> None:
    await close_pipeline(ctx["pipeline"])


def _redis_settings() -> RedisSettings:
    # arq reads this when the class is imported, so the environment is read then, through Settings.
    settings = get_settings()
    return redis_settings(settings) if settings.redis_url else RedisSettings()


# A sync's job holds a worker slot while it reads: long enough for a big account's read under a busy quota.
SYNC_JOB_TIMEOUT = 3600


def _every(seconds: int) -> set[int]:
    return set(range(0, 60, max(1, min(seconds, 30))))


class WorkerSettings:
    functions: ClassVar[list[Any]] = [run_actions]
    cron_jobs: ClassVar[list[Any]] = [
        # The safety net for lost hints and abandoned runs: with a 30 s lease, a killed worker's run is taken over
        # within the lease plus one sweep.
        cron(sweep_job, second=_every(get_settings().sweep_seconds), run_at_startup=True, unique=True),
        # Asked for at start (a complete mirror never synced is read then) and every minute by whichever worker arq
        # hands it to; its lease runs one turn per 10 minutes across every worker and API replica
        # (app/pipeline/upkeep.py).
        cron(upkeep_job, second=0, run_at_startup=True, unique=True),
        # Asked for at start (a complete mirror never synced is read then) and every minute; the worker that takes
        # an account's lease reads it, renewing the lease while it reads, however long (app/mirror/duty.py). A
        # read cut by the timeout goes on from where it stopped at a later minute.
        cron(mirror_sync_job, second=30, run_at_startup=True, unique=True, timeout=SYNC_JOB_TIMEOUT),
    ]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = _redis_settings()
    # Few runs at once, taken in queue order: under a backlog the earliest buyers finish first.
    max_jobs = get_settings().worker_concurrency
    # An idle worker looks for new jobs this often: the first API call follows the webhook's 202 within ~20 ms.
    poll_delay = 0.02
    # A run hands its remaining steps to a new job after 90 s; the rest is room for the last step's quota wait.
    job_timeout = 300
    # Retries are scheduled from the database as fresh jobs, never by arq itself.
    max_tries = 1
    # Results are never read; not keeping them frees a job id as soon as its job ends, so an action that was
    # not its contact's turn can be handed over again under the same `<id>:<attempt>` id.
    keep_result = 0
    # The health check (`systeme-flow health`) reads this key: one per host (a container's hostname is its id), so
    # a worker that stops deletes only its own, and rewritten every few seconds instead of arq's hourly default.
    health_check_key = worker_health_key()
    health_check_interval = WORKER_HEARTBEAT_SECONDS
