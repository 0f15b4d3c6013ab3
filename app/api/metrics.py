"""`GET /metrics` in the Prometheus text format."""

from __future__ import annotations

import hmac
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import StateDep
from app.errors import Unauthorized
from app.payments.alerts import unserved
from app.store.holds import holds
from app.store.mirror import all_syncs
from app.store.models import actions, api_calls, events, utcnow
from app.store.statuses import ActionStatus
from app.systeme.quota import account_key
from app.telemetry import (
    ACCOUNT_HELD,
    ACTION_LATENCY,
    ACTIONS,
    API_CALLS,
    EVENTS_UNPLANNED,
    MIRROR_MISSES,
    PAYMENTS_UNSERVED,
    QUEUE_DEPTH,
    QUOTA_REMAINING,
    REGISTRY,
    RETRIES,
)

router = APIRouter(tags=["health"])

# Judging a week of payments reads every payment, its actions and the refunds that may match it: too much for
# every scrape of a busy shop. Once a minute is as fresh as the alert it mirrors needs (ACCESS_DEADLINE_MINUTES).
UNSERVED_EVERY = 60.0


async def _unserved_count(state: StateDep) -> int:
    clock = time.monotonic()
    if state.unserved_read is not None and clock - state.unserved_read[0] < UNSERVED_EVERY:
        return state.unserved_read[1]
    # Read as the alert reads them: the last 7 days (a trial's test purchases count until they are discarded).
    count = len(await unserved(state.engine, state.settings, state.rules.sources, now=utcnow()))
    state.unserved_read = (clock, count)
    return count


async def _refresh(state: StateDep) -> None:
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    async with state.engine.connect() as conn:
        ACTIONS.clear()
        for account, kind, status, count in await conn.execute(
            sa.select(actions.c.account, actions.c.kind, actions.c.status, sa.func.count()).group_by(
                actions.c.account, actions.c.kind, actions.c.status
            )
        ):
            ACTIONS.labels(account, kind, status).set(count)
        # Served by the partial index on unplanned events: cheap however many events are stored.
        EVENTS_UNPLANNED.set(await conn.scalar(sa.select(sa.func.count()).where(events.c.planned_at.is_(None))) or 0)
        QUEUE_DEPTH.set(
            await conn.scalar(
                sa.select(sa.func.count()).where(
                    actions.c.status.in_((ActionStatus.PENDING, ActionStatus.SCHEDULED)),
                    actions.c.next_attempt_at <= now,
                )
            )
            or 0
        )
        API_CALLS.clear()
        for status, count in await conn.execute(
            sa.select(api_calls.c.status_code, sa.func.count())
            .where(api_calls.c.started_at >= hour_ago)
            .group_by(api_calls.c.status_code)
        ):
            API_CALLS.labels(str(status or "error")).set(count)
        RETRIES.set(
            await conn.scalar(
                sa.select(sa.func.count(sa.distinct(api_calls.c.action_id))).where(
                    api_calls.c.started_at >= hour_ago, api_calls.c.attempt > 1
                )
            )
            or 0
        )
        attempts = await conn.execute(
            sa.select(sa.func.sum(api_calls.c.duration_ms))
            .where(api_calls.c.started_at >= hour_ago)
            .group_by(api_calls.c.action_id, api_calls.c.attempt)
        )
        ACTION_LATENCY.durations = [float(total or 0) / 1000 for (total,) in attempts]
    MIRROR_MISSES.by_account = {account: sync.misses for account, sync in (await all_syncs(state.engine)).items()}
    PAYMENTS_UNSERVED.set(await _unserved_count(state))
    held = {h.account for h in await holds(state.engine)}
    ACCOUNT_HELD.clear()
    for name in sorted({*state.clients.accounts, *held}):
        ACCOUNT_HELD.labels(name).set(1 if name in held else 0)
    if state.redis is not None:
        redis: Any = state.redis  # redis-py types hget as sync-or-async
        for name, account in state.clients.accounts.items():
            remaining = await redis.hget(account_key(account.base_url, account.headers), "remaining")
            if remaining is not None:
                QUOTA_REMAINING.labels(name).set(float(remaining))


@router.get("/metrics")
async def metrics(request: Request, state: StateDep) -> Response:
    token = state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise Unauthorized("missing or wrong metrics token: send Authorization: Bearer <METRICS_TOKEN>")
    await _refresh(state)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
