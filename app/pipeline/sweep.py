"""The one sweep, run by the arq cron on every worker and by the embedded executor's loop: what a lost hint, a
stopped process or the passing of time left behind.

Safe on any number of API replicas and workers at once: each step is decided by the database (claims, `planned_at`
set from null, a probe's due time), and dispatching is only a hint whose arq job id refuses doubles. Judging the
events left unplanned is work every process would repeat only to lose the claim, so it has one holder at a time:
whoever takes its turn (app/store/leases.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from app.accounts.holds import probe_holds
from app.pipeline.planner import LEFTOVER_SECONDS, plan_leftovers
from app.pipeline.service import Pipeline
from app.pipeline.upkeep import maintain_pipeline
from app.store import leases
from app.store.actions import due_actions
from app.store.models import utcnow
from app.store.operator import expire_approvals

log = logging.getLogger(__name__)
# One pass over the unplanned events per turn, across every process (they wait LEFTOVER_SECONDS first anyway).
LEFTOVERS_TURN = timedelta(seconds=5)


async def sweep(pipeline: Pipeline, *, upkeep: bool = False) -> int:
    """Approvals that expired, a rules file that changed, events left unplanned, held accounts due a probe, then
    pending actions that are due and running ones whose lease ran out; with `upkeep`, retention and alerts too.
    Returns the number of actions dispatched."""
    engine = pipeline.engine
    expired = await expire_approvals(engine, now=utcnow())
    if expired:
        log.info("%d approvals expired", expired)
    # Parsing a big file must not stall the process's other tasks.
    await asyncio.to_thread(pipeline.rules.reload_if_changed)
    rules = pipeline.rules.current
    # None readable yet: events wait unplanned until the file is fixed.
    if rules is not None and await leases.take(engine, "leftovers", pipeline.holder, turn=LEFTOVERS_TURN, now=utcnow()):
        await plan_leftovers(
            engine,
            rules,
            pipeline.dispatcher.dispatch,
            approval_window=pipeline.approval_window,
            older_than=LEFTOVER_SECONDS,
            modes=pipeline.modes(),
            fire_limit=pipeline.fire_limit,
        )
    await probe_holds(engine, pipeline.clients, pipeline.settings)
    # Only work of each account's current mode runs (app/accounts/modes.py): a dry run's steps never run live.
    due = await due_actions(engine, now=utcnow(), modes=pipeline.modes())
    await pipeline.dispatcher.dispatch(due)
    if due:
        log.info("sweep dispatched %d actions", len(due))
    if upkeep:
        await maintain_pipeline(pipeline)
    return len(due)
