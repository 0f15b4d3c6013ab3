"""arq jobs: thin wrappers that pull resources out of ctx and call the plain service functions."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from app.accounts import rules_file_stamp
from app.actions.runner import run_actions as run_actions_service
from app.dispatch import ArqDispatcher, after_run, enqueue
from app.holds import on_held, probe_holds
from app.maintenance import action_died, maintain
from app.planning import LEFTOVER_SECONDS, fire_limit_for, load_ruleset, plan_leftovers
from app.store.actions import due_actions
from app.store.models import utcnow
from app.store.operator import expire_approvals

log = logging.getLogger(__name__)


async def run_actions(ctx: dict[str, Any], action_id: str) -> str:
    """One run: the actions of one event for one contact that `action_id` belongs to."""
    result = await run_actions_service(
        engine=ctx["engine"], client=ctx["clients"], action_id=action_id, policy=ctx["policy"]
    )
    # A fresh job per attempt, scheduled from the row: arq's own Retry would keep the first job's expiry.
    await after_run(ArqDispatcher(ctx["redis"]), result)
    if result.held is not None:
        await on_held(ctx["engine"], ctx["settings"], *result.held)
    for dead in result.dead:
        await action_died(ctx["engine"], ctx["settings"], dead)
    return result.status


async def sweep(ctx: dict[str, Any]) -> int:
    """Re-dispatch pending actions that are due and running ones whose lease ran out (e.g. Redis lost them).

    Safe on several workers at once: dispatching is only a hint, and the job id refuses doubles.
    """
    expired = await expire_approvals(ctx["engine"], now=utcnow())
    if expired:
        log.info("%d approvals expired", expired)
    stamp = rules_file_stamp(ctx["settings"])
    if stamp != ctx.get("rules_stamp"):
        ctx["rules_stamp"] = stamp
        rules = load_ruleset(ctx["settings"])
        if rules is not None:  # an unreadable file keeps the rules and accounts known so far
            ctx["rules"] = rules
            ctx["clients"].update(rules.loaded.file)
    if ctx.get("rules") is not None:
        await plan_leftovers(
            ctx["engine"],
            ctx["rules"],
            ArqDispatcher(ctx["redis"]).dispatch,
            approval_window=timedelta(hours=ctx["settings"].approval_timeout_hours),
            older_than=LEFTOVER_SECONDS,
            fire_limit=fire_limit_for(ctx["engine"], ctx["settings"]),
        )
    await probe_holds(ctx["engine"], ctx["clients"], ctx["settings"])
    due = await due_actions(ctx["engine"], now=utcnow())
    for action_id, attempt in due:
        await enqueue(ctx["redis"], action_id, attempt)
    if due:
        log.info("sweep dispatched %d actions", len(due))
    return len(due)


async def upkeep(ctx: dict[str, Any]) -> None:
    """Retention and alerts; unique in arq, so one worker runs it at a time."""
    await maintain(ctx["engine"], ctx["settings"])
