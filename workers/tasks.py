"""arq jobs: thin wrappers that pull resources out of ctx and call the plain service functions."""

from __future__ import annotations

import logging
from typing import Any

from app.actions.runner import run_action as run_action_service
from app.dispatch import enqueue
from app.maintenance import action_died, maintain
from app.store.actions import due_actions
from app.store.models import utcnow
from app.store.operator import expire_approvals

log = logging.getLogger(__name__)


async def run_action(ctx: dict[str, Any], action_id: str) -> str:
    result = await run_action_service(
        engine=ctx["engine"], client=ctx["client"], action_id=action_id, policy=ctx["policy"]
    )
    if result.status == "pending" and result.next_attempt_at is not None:
        # A fresh job per attempt, scheduled from the row: arq's own Retry would keep the first job's expiry.
        await enqueue(ctx["redis"], action_id, result.next_attempt, result.next_attempt_at)
    for waiting_id, attempt in result.follow_up:
        await enqueue(ctx["redis"], waiting_id, attempt)
    if result.status == "dead":
        await action_died(ctx["engine"], ctx["settings"], action_id)
    return result.status


async def sweep(ctx: dict[str, Any]) -> int:
    """Re-dispatch pending actions that are due and running ones whose lease ran out (e.g. Redis lost them).

    Safe on several workers at once: dispatching is only a hint, and the job id refuses doubles.
    """
    expired = await expire_approvals(ctx["engine"], now=utcnow())
    if expired:
        log.info("%d approvals expired", expired)
    due = await due_actions(ctx["engine"], now=utcnow())
    for action_id, attempt in due:
        await enqueue(ctx["redis"], action_id, attempt)
    if due:
        log.info("sweep dispatched %d actions", len(due))
    return len(due)


async def upkeep(ctx: dict[str, Any]) -> None:
    """Retention and alerts; unique in arq, so one worker runs it at a time."""
    await maintain(ctx["engine"], ctx["settings"])
