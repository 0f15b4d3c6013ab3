"""One run and what follows it, the same in both modes: the retry, the contact's next run, the account's hold,
the alert for each action that died."""

from __future__ import annotations

import logging

from app.accounts.holds import on_held
from app.actions.policy import RunResult
from app.actions.runner import run_actions
from app.pipeline.service import Pipeline
from app.pipeline.upkeep import action_died

log = logging.getLogger(__name__)


async def run(pipeline: Pipeline, action_id: str) -> RunResult:
    """Run the run that `action_id` belongs to, with its account's client, and settle it."""
    result = await run_actions(
        engine=pipeline.engine, client=pipeline.clients, action_id=action_id, policy=pipeline.policy
    )
    await settle(pipeline, result)
    return result


async def settle(pipeline: Pipeline, result: RunResult) -> None:
    # A fresh job per attempt, scheduled from the row: arq's own Retry would keep the first job's expiry.
    if result.retry is not None and result.next_attempt_at is not None:
        await pipeline.dispatcher.dispatch([result.retry], at=result.next_attempt_at, priority=result.priority)
    if result.follow_up:
        await pipeline.dispatcher.dispatch(result.follow_up)
    if result.held is not None:
        await on_held(pipeline.engine, pipeline.settings, *result.held)
    for dead in result.dead:
        await action_died(pipeline.engine, pipeline.settings, dead)
