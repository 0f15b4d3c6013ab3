"""The seam between "planned" and "executing": arq jobs when Redis is configured, in-process tasks otherwise.

Dispatching is only ever a hint: the database decides who runs an action (see app.store.actions.claim), and a
sweep finds whatever a lost hint left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.holds import on_held, probe_holds
from app.accounts.registry import AccountClients
from app.actions.runner import RetryPolicy, RunResult, run_actions
from app.config import Settings
from app.pipeline.upkeep import action_died, maintain
from app.store.actions import due_actions
from app.store.models import utcnow
from app.store.operator import expire_approvals
from app.systeme.client import SystemeClient

log = logging.getLogger(__name__)
# A job that has waited this long in Redis is dropped by arq; the sweep dispatches the action again.
JOB_EXPIRY = timedelta(hours=6)
# Retention and alerts, in embedded mode (the arq cron does it with Redis).
UPKEEP_SECONDS = 600.0


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


async def after_run(dispatcher: Dispatcher, result: RunResult) -> None:
    """Schedule what a run leaves behind: its retry, and the contact's next run."""
    if result.retry is not None and result.next_attempt_at is not None:
        await dispatcher.dispatch([result.retry], at=result.next_attempt_at)
    if result.follow_up:
        await dispatcher.dispatch(result.follow_up)


class ArqDispatcher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def dispatch(self, items: Sequence[tuple[str, int]], *, at: datetime | None = None) -> None:
        for action_id, attempt in items:
            await enqueue(self.redis, action_id, attempt, at)


class EmbeddedExecutor:
    """Runs actions inside the API process: a few worker tasks fed by ingest and by a sweep of the database."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        client: AccountClients | SystemeClient,
        policy: RetryPolicy,
        concurrency: int = 4,
        sweep_seconds: float = 1.0,
        settings: Settings | None = None,
        ingest_first: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.policy = policy
        self.concurrency = concurrency
        self.sweep_seconds = sweep_seconds
        self.settings = settings
        self.ingest_first = ingest_first
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def dispatch(self, items: Sequence[tuple[str, int]], *, at: datetime | None = None) -> None:
        delay = (at - utcnow()).total_seconds() if at is not None else 0.0
        if delay > 0:
            # A timer for a near retry (the sweep would find it too, up to a sweep later).
            asyncio.get_running_loop().call_later(delay, self._put, [i for i, _ in items])
            return
        self._put([action_id for action_id, _attempt in items])

    def _put(self, action_ids: list[str]) -> None:
        for action_id in action_ids:
            if action_id not in self._queued:
                self._queued.add(action_id)
                self.queue.put_nowait(action_id)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._sweep()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            action_id = await self.queue.get()
            if self.ingest_first is not None:
                # Deliveries waiting to be stored go first: the process takes a burst at full speed and runs its
                # actions right after (each run waits a bounded time, so actions never stall behind ingest).
                await self.ingest_first()
            self._queued.discard(action_id)
            try:
                result = await run_actions(
                    engine=self.engine, client=self.client, action_id=action_id, policy=self.policy
                )
                await after_run(self, result)
                if self.settings is not None:
                    if result.held is not None:
                        await on_held(self.engine, self.settings, *result.held)
                    for dead in result.dead:
                        await action_died(self.engine, self.settings, dead)
            except Exception:
                # The row stays pending or running with a lease; the sweep brings it back.
                log.exception("running action %s failed", action_id)

    async def _sweep(self) -> None:
        last_upkeep = 0.0
        while True:
            try:
                await expire_approvals(self.engine, now=utcnow())
                if self.settings is not None and isinstance(self.client, AccountClients):
                    await probe_holds(self.engine, self.client, self.settings)
                await self.dispatch(await due_actions(self.engine, now=utcnow()))
                if self.settings is not None and time.monotonic() - last_upkeep > UPKEEP_SECONDS:
                    last_upkeep = time.monotonic()
                    await maintain(self.engine, self.settings)
            except Exception:
                log.exception("sweeping due actions failed; trying again")
            await asyncio.sleep(self.sweep_seconds)
