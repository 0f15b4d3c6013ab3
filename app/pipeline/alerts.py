"""Alerts to ALERT_WEBHOOK_URL (Slack-compatible `{"text": ...}`): dead actions, approvals waiting too long,
rules that fired daily and went silent. At most one message per kind per hour."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.store.models import actions, alerts, events, rule_outcomes
from app.store.statuses import ActionStatus

log = logging.getLogger(__name__)
QUIET = timedelta(hours=1)


async def send(engine: AsyncEngine, settings: Settings, *, kind: str, text: str, now: datetime) -> bool:
    """Post one alert unless this kind was sent within the hour; False when throttled or not configured."""
    if not settings.alert_webhook_url:
        return False
    async with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        # One conditional upsert claims the message: of several processes alerting at once (replicas, workers),
        # exactly one sees its row come back; a read then a write would let each of them send it.
        claimed = await conn.execute(
            dialect.insert(alerts)
            .values(kind=kind, last_sent_at=now)
            .on_conflict_do_update(
                index_elements=["kind"], set_={"last_sent_at": now}, where=alerts.c.last_sent_at <= now - QUIET
            )
            .returning(alerts.c.kind)
        )
        if claimed.first() is None:
            return False
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(settings.alert_webhook_url, json={"text": f"systeme-flow: {text}"})
            answer.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("alert %s could not be delivered: %s", kind, type(exc).__name__)
        return False
    return True


async def check(engine: AsyncEngine, settings: Settings, *, now: datetime) -> list[str]:
    """The periodic checks (run by the sweep); returns the kinds that were sent."""
    sent = []
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            sa.select(sa.func.count()).where(
                actions.c.status == ActionStatus.AWAITING_APPROVAL,
                actions.c.created_at < now - timedelta(hours=settings.alert_approval_hours),
            )
        )
    if waiting and await send(
        engine,
        settings,
        kind="approvals",
        text=f"{waiting} actions have waited for approval for more than {settings.alert_approval_hours:g} h",
        now=now,
    ):
        sent.append("approvals")
    silent = await silent_rules(engine, now=now, silence=timedelta(hours=settings.alert_silence_hours))
    if silent and await send(
        engine,
        settings,
        kind="silent",
        text=f"rules that fired every day are silent for {settings.alert_silence_hours:g} h: {', '.join(silent)}",
        now=now,
    ):
        sent.append("silent")
    return sent


async def silent_rules(engine: AsyncEngine, *, now: datetime, silence: timedelta, days: int = 7) -> list[str]:
    """Rules that matched on each of the `days` days before the silence window, and not since."""
    start = now - silence - timedelta(days=days)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(rule_outcomes.c.rule_id, events.c.received_at)
            .join(events, events.c.id == rule_outcomes.c.event_id)
            .where(rule_outcomes.c.decision == "matched", events.c.received_at >= start)
        )
        seen: dict[str, set[int]] = defaultdict(set)
        recent: set[str] = set()
        for rule_id, received_at in rows:
            if received_at >= now - silence:
                recent.add(rule_id)
            else:
                seen[rule_id].add((received_at - start).days)
    return sorted(rule for rule, day_set in seen.items() if len(day_set) >= days and rule not in recent)
