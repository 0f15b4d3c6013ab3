"""arq jobs: thin calls into app/pipeline with the worker's one Pipeline (built in workers/settings.py)."""

from __future__ import annotations

from typing import Any

from app.pipeline.service import Pipeline
from app.pipeline.settle import run
from app.pipeline.sweep import sweep
from app.pipeline.upkeep import maintain_pipeline, sync_mirrors


def _pipeline(ctx: dict[str, Any]) -> Pipeline:
    pipeline: Pipeline = ctx["pipeline"]
    return pipeline


async def run_actions(ctx: dict[str, Any], action_id: str) -> str:
    """One run: the actions of one event for one contact that `action_id` belongs to."""
    return (await run(_pipeline(ctx), action_id)).status


async def sweep_job(ctx: dict[str, Any]) -> int:
    """The sweep (app/pipeline/sweep.py), on every worker; its upkeep is the `upkeep` cron's."""
    return await sweep(_pipeline(ctx))


async def upkeep_job(ctx: dict[str, Any]) -> bool:
    """Retention and alerts, when this worker takes their turn (a lease in the database, not arq's Redis)."""
    return await maintain_pipeline(_pipeline(ctx))


async def mirror_sync_job(ctx: dict[str, Any]) -> int:
    """The complete mirrors' syncs whose lease this worker takes (app/mirror/duty.py); the number read."""
    return len(await sync_mirrors(_pipeline(ctx)))
