"""The embedded executor: runs actions inside the API process (no Redis), a few worker tasks fed by ingest, by
what a run leaves behind and by the sweep; the same `run` and `sweep` the arq workers call."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from datetime import datetime

from app.pipeline.service import Pipeline
from app.pipeline.settle import run
from app.pipeline.sweep import sweep
from app.pipeline.upkeep import sync_mirrors
from app.store.models import utcnow
from app.store.statuses import Priority
from app.store.writer import GroupWriter

log = logging.getLogger(__name__)


class EmbeddedExecutor:
    def __init__(self, *, concurrency: int = 4, sweep_seconds: float = 1.0, writer: GroupWriter | None = None) -> None:
        self.concurrency = concurrency
        self.sweep_seconds = sweep_seconds
        # Deliveries waiting to be stored go first (see GroupWriter.yield_to_ingest).
        self.writer = writer
        # (priority rank, arrival, action id): higher priorities first, then first come first served.
        self.queue: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._syncing: asyncio.Task[None] | None = None

    async def dispatch(
        self, items: Sequence[tuple[str, int]], *, at: datetime | None = None, priority: Priority = Priority.NORMAL
    ) -> None:
        delay = (at - utcnow()).total_seconds() if at is not None else 0.0
        if delay > 0:
            # A timer for a near retry, or a run that gave its slot back for the quota (the sweep would find it
            # too, up to a sweep later).
            asyncio.get_running_loop().call_later(delay, self._put, [i for i, _ in items], priority)
            return
        self._put([action_id for action_id, _attempt in items], priority)

    def _put(self, action_ids: list[str], priority: Priority = Priority.NORMAL) -> None:
        for action_id in action_ids:
            if action_id not in self._queued:
                self._queued.add(action_id)
                self.queue.put_nowait((priority.rank, next(self._arrivals), action_id))

    def start(self, pipeline: Pipeline) -> None:
        """Start the workers and the sweep on `pipeline` (whose dispatcher is this executor)."""
        self._tasks = [asyncio.create_task(self._work(pipeline)) for _ in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._sweep(pipeline)))

    async def stop(self) -> None:
        if self._syncing is not None:
            self._tasks.append(self._syncing)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self, pipeline: Pipeline) -> None:
        while True:
            _rank, _arrival, action_id = await self.queue.get()
            if self.writer is not None:
                await self.writer.yield_to_ingest()
            self._queued.discard(action_id)
            try:
                await run(pipeline, action_id)
            except Exception:
                # The row stays pending or running with a lease; the sweep brings it back.
                log.exception("running action %s failed", action_id)

    async def _sweep(self, pipeline: Pipeline) -> None:
        while True:
            try:
                # Upkeep is asked for on every sweep: its lease runs it once per turn across every replica.
                await sweep(pipeline, upkeep=True)
            except Exception:
                log.exception("sweeping due actions failed; trying again")
            self._ask_sync(pipeline)
            await asyncio.sleep(self.sweep_seconds)

    def _ask_sync(self, pipeline: Pipeline) -> None:
        # In a task of its own: a read of a big account (long, during a launch) never holds the sweep's duties.
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.create_task(self._sync(pipeline))

    async def _sync(self, pipeline: Pipeline) -> None:
        try:
            await sync_mirrors(pipeline)
        except Exception:
            log.exception("syncing the contact mirrors failed; trying again")
