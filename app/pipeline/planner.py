"""Planning after the answer: ingest stores the event alone and answers; the planner judges it with the rules,
stores its outcomes and actions, and hands its runs to the executor.

Why: a webhook sender waits for the durable write, not for the rules. Judging, rendering, validating addresses and
writing five rows per event after the 202 lets a burst be taken at the speed of the event rows alone, and the plans
of a burst are then written in a few large transactions (see docs/benchmarks.md).

The contract holds across a crash: the event row is durable before the 2xx, and an event left unplanned (its
process stopped between the answer and the plan) is planned by a sweep, in the API process or in an arq worker
(`plan_leftovers`). No event is planned twice: a plan is stored only by the update that sets `planned_at` from null.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes
from app.config import Settings
from app.mirror.events import learn_from_events
from app.pipeline import alerts
from app.pipeline.dispatch import Dispatcher
from app.rules.current import RulesInForce
from app.rules.engine import RuleOutcome, RuleSet
from app.store.models import utcnow
from app.store.plans import Judge, Unplanned, record_plans, unplanned_events
from app.store.statuses import Priority
from app.store.writer import GroupWriter

log = logging.getLogger(__name__)

# Events one transaction plans at most.
BATCH = 256
# An event still unplanned this long after it arrived is left to the sweeps: the planner of the process that
# stored it plans it within about a second, even under a burst.
LEFTOVER_SECONDS = 30.0

# Events the planner holds in memory at most; more are planned by the sweep, from the database.
MAX_QUEUED = 10_000


class Dispatch(Protocol):
    """A dispatcher's `dispatch` (app/pipeline/dispatch.py): runs to hand over now, at a priority."""

    def __call__(self, items: Sequence[tuple[str, int]], /, *, priority: Priority = ...) -> Awaitable[None]: ...


# Told the (rule, contact) lines held past RULE_FIRES_PER_CONTACT by one batch (sends the alert).
OnHeld = Callable[[Sequence[str]], Awaitable[None]]


@dataclass(frozen=True)
class FireLimit:
    """RULE_FIRES_PER_CONTACT, and what to tell when a batch held fires past it."""

    per_contact: int
    on_held: OnHeld | None = None


def fire_limit_for(engine: AsyncEngine, settings: Settings) -> FireLimit:
    """RULE_FIRES_PER_CONTACT from the settings, alerting (at most once an hour, as every alert kind) when it holds."""

    async def on_held(held: Sequence[str]) -> None:
        text = (
            f"rules fired more than RULE_FIRES_PER_CONTACT={settings.rule_fires_per_contact} times in an hour for "
            f"one contact, a loop perhaps; their actions wait for approval: {'; '.join(held[:10])}"
        )
        await alerts.send(engine, settings, kind="rule_fires", text=text, now=utcnow())

    return FireLimit(settings.rule_fires_per_contact, on_held)


def judge_with(rules: RuleSet) -> Judge:
    def judge(event: Unplanned) -> Sequence[RuleOutcome] | None:
        try:
            return rules.plan(source=event.source, event_type=event.event_type, payload=event.payload)
        except Exception:
            # Planning is written never to raise for what a payload holds; if it does, the event stays unplanned
            # (listed with `planned_at` null) and the sweep tries again, instead of failing its whole batch.
            log.exception("planning event %s failed; the sweep will try again", event.event_id)
            return None

    return judge


async def plan_events(
    engine: AsyncEngine,
    rules: RuleSet,
    pending: Sequence[Unplanned],
    dispatch: Dispatch,
    *,
    approval_window: timedelta,
    modes: Modes | None = None,
    fire_limit: FireLimit | None = None,
) -> int:
    """Judge, store and dispatch the plans of those of `pending` not planned yet; the number planned here. Their
    actions belong to `modes` (account -> current mode), the default account's to the event's arrival mode."""
    held: list[str] = []
    ranks: dict[str, int] = {}
    try:
        # Contact and tag events of a complete mirror's account update it before the rules judge them.
        await learn_from_events(engine, rules.loaded.file, pending, modes)
    except Exception:
        # The mirror heals from its own contradictions; planning goes on whatever became of this.
        log.exception("updating the contact mirror from %d events failed", len(pending))
    planned, runs = await record_plans(
        engine,
        pending,
        judge_with(rules),
        rules_version=rules.version,
        now=utcnow(),
        approval_window=approval_window,
        modes=modes,
        fires_per_contact=fire_limit.per_contact if fire_limit else None,
        held=held,
        priorities=ranks,
    )
    if held:
        log.warning("rules held for approval past RULE_FIRES_PER_CONTACT: %s", "; ".join(held))
        if fire_limit is not None and fire_limit.on_held is not None:
            try:
                await fire_limit.on_held(held)
            except Exception:
                # The actions wait for approval whatever becomes of the alert.
                log.exception("alerting about rules held past RULE_FIRES_PER_CONTACT failed")
    if runs:
        try:
            # Grouped by priority: a high-priority run's job goes ahead of a normal backlog (app/pipeline/dispatch.py).
            for priority in Priority:
                group = [(action_id, 1) for action_id in runs if ranks.get(action_id, 1) == priority.rank]
                if group:
                    await dispatch(group, priority=priority)
        except Exception:
            # Stored is what counts: the action sweep dispatches these once the queue is back.
            log.exception("dispatching %d planned runs failed; the sweep will retry", len(runs))
    return planned


async def plan_leftovers(
    engine: AsyncEngine,
    rules: RuleSet,
    dispatch: Dispatch,
    *,
    approval_window: timedelta,
    older_than: float,
    modes: Modes | None = None,
    fire_limit: FireLimit | None = None,
) -> int:
    """Plan events left unplanned for more than `older_than` seconds; the number of events planned."""
    total = 0
    while True:
        before = utcnow() - timedelta(seconds=older_than)
        pending = await unplanned_events(engine, received_before=before, limit=BATCH)
        if not pending:
            return total
        log.warning(
            "planning %d events unplanned for over %.0f s (their process stopped, or a backlog)",
            len(pending),
            older_than,
        )
        planned = await plan_events(
            engine,
            rules,
            pending,
            dispatch,
            approval_window=approval_window,
            modes=modes,
            fire_limit=fire_limit,
        )
        total += planned
        if planned < len(pending) or len(pending) < BATCH:
            # The last page, or an event the rules cannot judge (or another planner's): the next sweep goes on.
            return total


class Planner:
    """Plans the events this process stored, right after their answers, a batch at a time (leftovers: the sweep)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        rules: RulesInForce,
        dispatcher: Dispatcher,
        approval_window: timedelta,
        writer: GroupWriter | None = None,
        modes: Callable[[], Modes] | None = None,
        fire_limit: FireLimit | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.dispatcher = dispatcher
        self.approval_window = approval_window
        # Deliveries waiting to be stored go first (see GroupWriter.yield_to_ingest).
        self.writer = writer
        # Each account's current mode (app/accounts/modes.py), which the planned actions belong to.
        self.modes = modes
        self.fire_limit = fire_limit
        self._queue: list[Unplanned] = []
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, event: Unplanned) -> None:
        if len(self._queue) >= MAX_QUEUED:
            # Memory stays bounded under any burst: the event is stored, and the sweep plans it from there.
            log.warning("%d events wait to be planned; event %s is left to the sweep", len(self._queue), event.event_id)
            return
        self._queue.append(event)
        self._ready.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work())]

    async def stop(self, timeout: float = 5.0) -> None:
        """Plan what is queued (a stop that cuts this short leaves it to the next start's sweep), then stop."""
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except TimeoutError:
            log.warning("stopping with %d events unplanned: the next start's sweep plans them", len(self._queue))
        except Exception:
            log.exception("planning the queued events at stop failed: the next start's sweep plans them")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain(self) -> None:
        while self._queue:
            await self._plan_batch()

    async def _plan_batch(self) -> None:
        rules = self.rules.current
        if rules is None:  # no readable rules yet: the events wait unplanned for the sweep
            self._queue = []
            return
        batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
        await plan_events(
            self.engine,
            rules,
            batch,
            self.dispatcher.dispatch,
            approval_window=self.approval_window,
            modes=self._modes(),
            fire_limit=self.fire_limit,
        )

    def _modes(self) -> Modes | None:
        return self.modes() if self.modes is not None else None

    async def _work(self) -> None:
        while True:
            await self._ready.wait()
            if self.writer is not None:
                # Deliveries waiting to be stored go first, and the events that arrive meanwhile join this batch.
                # Bounded: under a burst that never pauses, a batch is still planned every second or so.
                await self.writer.yield_to_ingest()
            try:
                await self._plan_batch()
            except Exception:
                # These events stay unplanned in the database; the sweep plans them.
                log.exception("planning a batch of events failed; the sweep will try again")
            if not self._queue:
                self._ready.clear()
