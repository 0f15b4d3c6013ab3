"""Periodic upkeep, run by the arq cron or the embedded loop: retention, sessions, alerts.

Every process asks for it (each worker every minute, each embedded API replica every sweep); one turn of it runs
per UPKEEP_TURN across all of them, by whichever asks first once the last turn ended (app/store/leases.py), so
alerts are not multiplied by the number of processes and a dead holder's duty is taken over.

The complete mirrors' syncs are not part of it: a read may last longer than a turn, so each account's is a duty of
its own with a lease its holder renews (`sync_mirrors`, app/mirror/duty.py), asked for beside the upkeep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from app.pipeline.service import Pipeline

from app.config import Settings
from app.mirror.duty import SYNC_TURN
from app.mirror.report import SyncReport
from app.mirror.upkeep import keep_mirrors
from app.payments.alerts import alert_unserved
from app.pipeline import alerts
from app.rules.schema import DEFAULT_ACCOUNT, SourceConfig
from app.store import leases
from app.store.models import utcnow
from app.store.retention import purge
from app.store.sessions import purge_sessions

log = logging.getLogger(__name__)
UPKEEP_TURN = timedelta(minutes=10)


async def maintain(
    engine: AsyncEngine,
    settings: Settings,
    *,
    sources: Mapping[str, SourceConfig] | None = None,
    mode: str | None = None,
    now: datetime | None = None,
) -> None:
    """Retention, sessions and the alerts; with the rules' `sources`, buyers who paid and have no access too
    (`mode`: the default account's, so a trial's test purchases raise no alarm once live)."""
    now = now or utcnow()
    purged = await purge(engine, before=now - timedelta(days=settings.retention_days), now=now)
    if purged:
        log.info("retention: %d events older than %d days purged", purged, settings.retention_days)
    await purge_sessions(engine, now=now)
    await alerts.check(engine, settings, now=now)
    if sources is not None:
        named = await alert_unserved(engine, settings, sources, now=now, mode=mode)
        if named:
            log.warning("alert: %d buyers paid and have no access yet", named)


async def maintain_pipeline(pipeline: Pipeline, *, now: datetime | None = None) -> bool:
    """`maintain` with what the pipeline knows (the rules in force for payments, the default account's mode), if
    this process takes the turn; True when it did."""
    now = now or utcnow()
    if not await leases.take(pipeline.engine, "upkeep", pipeline.holder, turn=UPKEEP_TURN, now=now):
        return False
    rules = pipeline.rules.current
    sources = rules.sources if rules is not None else None
    mode = pipeline.modes().get(DEFAULT_ACCOUNT)
    await maintain(pipeline.engine, pipeline.settings, sources=sources, mode=mode, now=now)
    return True


async def sync_mirrors(
    pipeline: Pipeline, *, now: datetime | None = None, turn: timedelta = SYNC_TURN
) -> list[SyncReport]:
    """The complete contact mirrors this process takes the lease of, read: at the first ask when never synced,
    then every MIRROR_SYNC_HOURS (the worker's `mirror_sync` cron, the embedded executor's sync task)."""
    every = timedelta(hours=pipeline.settings.mirror_sync_hours)
    return await keep_mirrors(
        pipeline.engine,
        pipeline.clients,
        pipeline.rules.file,
        holder=pipeline.holder,
        every=every,
        now=now or utcnow(),
        turn=turn,
    )


async def action_died(engine: AsyncEngine, settings: Settings, action_id: str) -> None:
    await alerts.send(
        engine,
        settings,
        kind="dead",
        text=f"action {action_id} is dead: it failed on every attempt (retry it from the dashboard)",
        now=utcnow(),
    )
