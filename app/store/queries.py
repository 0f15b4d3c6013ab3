"""Read models for operators: what came in, what the rules decided, what ran and what Systeme.io answered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import actions, api_calls, events, rule_outcomes

# Every status an action can be in, for filters that must refuse a typo rather than find nothing.
ACTION_STATUSES = ("pending", "running", "succeeded", "failed", "dead", "awaiting_approval", "rejected", "skipped")


def _plain(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if hasattr(value, "isoformat"):
            out[key] = value.isoformat()
    return out


def _page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1]["id"] if more else None


async def list_events(
    engine: AsyncEngine,
    *,
    source: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    email: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, with action counts by status. `status` keeps events with an action in that status;
    `email` the events a rule rendered that contact for."""
    query = sa.select(
        events.c.id, events.c.source, events.c.type, events.c.received_at, events.c.occurred_at, events.c.rules_version
    ).order_by(events.c.id.desc())
    if source:
        query = query.where(events.c.source == source)
    if event_type:
        query = query.where(events.c.type == event_type)
    if since:
        query = query.where(events.c.received_at >= since)
    if status:
        query = query.where(
            sa.select(actions.c.id).where(actions.c.event_id == events.c.id, actions.c.status == status).exists()
        )
    if email:
        query = query.where(
            sa.select(rule_outcomes.c.id)
            .where(rule_outcomes.c.event_id == events.c.id, rule_outcomes.c.contact_email == email.strip().lower())
            .exists()
        )
    if cursor:
        query = query.where(events.c.id < cursor)
    async with engine.connect() as conn:
        rows = [_plain(r) for r in await conn.execute(query.limit(limit + 1))]
        ids = [r["id"] for r in rows]
        counts = await conn.execute(
            sa.select(actions.c.event_id, actions.c.status, sa.func.count())
            .where(actions.c.event_id.in_(ids))
            .group_by(actions.c.event_id, actions.c.status)
        )
        by_event: dict[str, dict[str, int]] = {i: {} for i in ids}
        for event_id, action_status, count in counts:
            by_event[event_id][action_status] = count
    for row in rows:
        row["actions"] = by_event[row["id"]]
    return _page(rows, limit)


async def list_actions(
    engine: AsyncEngine,
    *,
    status: str | None = None,
    rule: str | None = None,
    contact: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = sa.select(actions).order_by(actions.c.id.desc())
    if status:
        query = query.where(actions.c.status == status)
    if rule:
        query = query.where(actions.c.rule_id == rule)
    if contact:
        query = query.where(actions.c.contact_email == contact.strip().lower())
    if cursor:
        query = query.where(actions.c.id < cursor)
    async with engine.connect() as conn:
        rows = [_plain(r) for r in await conn.execute(query.limit(limit + 1))]
    return _page(rows, limit)


async def get_action(engine: AsyncEngine, action_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(actions).where(actions.c.id == action_id))).first()
        if row is None:
            return None
        action = _plain(row)
        calls = await conn.execute(
            sa.select(api_calls).where(api_calls.c.action_id == action_id).order_by(api_calls.c.id)
        )
        action["calls"] = [_plain(c) for c in calls]
    return action


async def get_event(engine: AsyncEngine, event_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(events).where(events.c.id == event_id))).first()
        if row is None:
            return None
        event = _plain(row)
        event.pop("provider_id", None)
        outcomes = await conn.execute(
            sa.select(rule_outcomes).where(rule_outcomes.c.event_id == event_id).order_by(rule_outcomes.c.id)
        )
        event["rules"] = [_plain(o) for o in outcomes]
        action_rows = await conn.execute(
            sa.select(actions).where(actions.c.event_id == event_id).order_by(actions.c.rule_id, actions.c.seq)
        )
        event["actions"] = [_plain(a) for a in action_rows]
        ids = [a["id"] for a in event["actions"]]
        calls = await conn.execute(sa.select(api_calls).where(api_calls.c.action_id.in_(ids)).order_by(api_calls.c.id))
        by_action: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for call in calls:
            by_action[call.action_id].append(_plain(call))
        for action in event["actions"]:
            action["calls"] = by_action[action["id"]]
    return event


async def rule_stats(engine: AsyncEngine, *, since: datetime) -> dict[str, dict[str, int]]:
    """Per rule since `since`: times matched, and its actions that succeeded or failed (failed, dead)."""
    stats: dict[str, dict[str, int]] = {}
    async with engine.connect() as conn:
        matched = await conn.execute(
            sa.select(rule_outcomes.c.rule_id, sa.func.count())
            .join(events, events.c.id == rule_outcomes.c.event_id)
            .where(events.c.received_at >= since, rule_outcomes.c.decision == "matched")
            .group_by(rule_outcomes.c.rule_id)
        )
        for rule_id, count in matched:
            stats.setdefault(rule_id, {"matched": 0, "succeeded": 0, "failed": 0})["matched"] = count
        done = await conn.execute(
            sa.select(actions.c.rule_id, actions.c.status, sa.func.count())
            .where(actions.c.created_at >= since, actions.c.status.in_(("succeeded", "failed", "dead")))
            .group_by(actions.c.rule_id, actions.c.status)
        )
        for rule_id, status, count in done:
            entry = stats.setdefault(rule_id, {"matched": 0, "succeeded": 0, "failed": 0})
            entry["succeeded" if status == "succeeded" else "failed"] += count
    return stats
