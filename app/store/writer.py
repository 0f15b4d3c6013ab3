"""Group commit for ingest: events that arrive together are stored in one transaction.

Each caller still waits for the commit that holds its event before it answers, so nothing is acknowledged that
is not durable; what changes is that 30 concurrent deliveries cost one transaction instead of 30.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.events import NewEvent, StoredEvent, record_events

log = logging.getLogger(__name__)
# Planning, and in embedded mode each run, starts only once no delivery waits to be stored and none arrived for
# INGEST_GAP_SECONDS (within a burst deliveries come a millisecond or less apart), or after INGEST_FIRST_SECONDS.
INGEST_FIRST_SECONDS = 1.0
INGEST_GAP_SECONDS = 0.005


class GroupWriter:
    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = 128, first_seconds: float = INGEST_FIRST_SECONDS
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.first_seconds = first_seconds
        self._pending: list[tuple[NewEvent, asyncio.Future[StoredEvent]]] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_write = float("-inf")

    async def idle(self, timeout: float) -> None:
        """Return once no delivery is waiting to be stored, or after `timeout` seconds, whichever comes first."""
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    async def quiet(self, gap: float, timeout: float) -> None:
        """Return once no delivery is waiting to be stored and none arrived for `gap` seconds (a burst is over, or
        between two events of a trickle), or after `timeout` seconds, whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if not self._idle.is_set():
                await self.idle(left)
                continue
            since = loop.time() - self._last_write
            if since >= gap:
                return
            await asyncio.sleep(min(gap - since, left))

    async def yield_to_ingest(self) -> None:
        """What the planner and the embedded executor wait for before each batch or run: a burst takes the process
        at full speed, and its plans and runs follow right after (bounded, so they never stall behind ingest)."""
        await self.quiet(INGEST_GAP_SECONDS, self.first_seconds)

    async def write(self, item: NewEvent) -> StoredEvent:
        self._last_write = asyncio.get_running_loop().time()
        future: asyncio.Future[StoredEvent] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        # Shielded: a caller that goes away must not cancel the commit the others wait for.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            await self._flush_pending()
        finally:
            self._idle.set()

    async def _flush_pending(self) -> None:
        # While one batch commits, the next one gathers; an idle system writes a batch of one at once.
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                results = await record_events(self.engine, [item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                # One event the database refuses must not fail the others: store them one by one.
                for item, future in batch:
                    try:
                        _settle(future, (await record_events(self.engine, [item]))[0])
                    except Exception as single:
                        _settle(future, single)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)


def _settle(future: asyncio.Future[StoredEvent], outcome: StoredEvent | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
