"""Periodic upkeep, run by the arq cron or the embedded loop: approvals that expire, retention, alerts."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.pipeline import alerts
from app.store.models import utcnow
from app.store.retention import purge
from app.store.sessions import purge_sessions

log = logging.getLogger(__name__)


async def maintain(engine: AsyncEngine, settings: Settings) -> None:
    now = utcnow()
    purged = await purge(engine, before=now - timedelta(days=settings.retention_days), now=now)
    if purged:
        log.info("retention: %d events older than %d days purged", purged, settings.retention_days)
    await purge_sessions(engine, now=now)
    await alerts.check(engine, settings, now=now)


async def action_died(engine: AsyncEngine, settings: Settings, action_id: str) -> None:
    await alerts.send(
        engine,
        settings,
        kind="dead",
        text=f"action {action_id} is dead: it failed on every attempt (retry it from the dashboard)",
        now=utcnow(),
    )
