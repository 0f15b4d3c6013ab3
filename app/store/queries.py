"""Read models for operators: what came in, what the rules decided, what ran and what Systeme.io answered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import actions, api_calls, events, rule_outcomes
from app.store.statuses import ActionStatus

# Every status an action can be in, for filters that must refuse a typo rather than find nothing.
ACTION_STATUSES = (
    ActionStatus.PENDING,
    ActionStatus.SCHEDULED,
    ActionStatus.RUNNING,
    ActionStatus.SUCCEEDED,
    ActionStatus.FAILED,
    ActionStatus.DEAD,
    ActionStatus.AWAITING_APPROVAL,
    ActionStatus.REJECTED,
    ActionStatus.SKIPPED,
    ActionStatus.CANCELLED,
)


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
    """Newest first, each with who (`contacts`), which rules matched (`rules`, once each, replays included)
    and its actions' counts by status. `status` keeps events with an action in that status; `email` the events
    a rule rendered that contact for."""
    query = sa.select(
        events.c.id,
        events.c.source,
        events.c.type,
        events.c.received_at,
        events.c.occurred_at,
        events.c.rules_version,
        events.c.planned_at,
        events.c.mode,
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
        outcomes = await conn.execute(
            sa.select(rule_outcomes.c.event_id, rule_outcomes.c.rule_id, rule_outcomes.c.contact_email)
            .where(rule_outcomes.c.event_id.in_(ids), rule_outcomes.c.decision == "matched")
            .order_by(rule_outcomes.c.id)
        )
        # Dicts as ordered sets: a rule a replay matched again is listed once, in the order first matched.
        matched: dict[str, dict[str, None]] = {i: {} for i in ids}
        contacts: dict[str, dict[str, None]] = {i: {} for i in ids}
        for event_id, rule_id, contact_email in outcomes:
            matched[event_id][rule_id] = None
            if contact_email:
                contacts[event_id][contact_email] = None
    for row in rows:
        row["contacts"] = list(contacts[row["id"]])
        row["rules"] = list(matched[row["id"]])
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
        event["rules"] = _latest_judgements([_plain(o) for o in outcomes])
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


def _latest_judgements(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per rule: its latest decision, with the ones a replay superseded in `earlier`."""
    by_rule: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        previous = by_rule.get(outcome["rule_id"])
        outcome["earlier"] = [*previous.pop("earlier"), previous] if previous else []
        by_rule[outcome["rule_id"]] = outcome
    return list(by_rule.values())


async def rule_stats(engine: AsyncEngine, *, since: datetime) -> dict[str, dict[str, int]]:
    """Per rule, over the events received since `since`, each event counted once whatever its replays:

    - `matched`: events the rule matched;
    - `succeeded`: of those, events whose actions from this rule all succeeded;
    - `failed`: of those, events with an action from this rule failed or dead.

    The actions are those of the rule's latest planning of the event (a replay's, when there was one);
    the rest are waiting, skipped or rejected.
    """
    stats: dict[str, dict[str, int]] = {}

    def entry(rule_id: str) -> dict[str, int]:
        return stats.setdefault(rule_id, {"matched": 0, "succeeded": 0, "failed": 0})

    recent = sa.select(events.c.id).where(events.c.received_at >= since)
    async with engine.connect() as conn:
        matched = await conn.execute(
            sa.select(rule_outcomes.c.rule_id, sa.func.count(sa.distinct(rule_outcomes.c.event_id)))
            .where(rule_outcomes.c.event_id.in_(recent), rule_outcomes.c.decision == "matched")
            .group_by(rule_outcomes.c.rule_id)
        )
        for rule_id, count in matched:
            entry(rule_id)["matched"] = count
        latest = (
            sa.select(actions.c.event_id, actions.c.rule_id, sa.func.max(actions.c.created_at).label("at"))
            .where(actions.c.event_id.in_(recent))
            .group_by(actions.c.event_id, actions.c.rule_id)
            .subquery()
        )
        per_event = (
            sa.select(
                actions.c.rule_id,
                sa.func.sum(sa.case((actions.c.status == ActionStatus.SUCCEEDED, 0), else_=1)).label("unfinished"),
                sa.func.sum(
                    sa.case((actions.c.status.in_((ActionStatus.FAILED, ActionStatus.DEAD)), 1), else_=0)
                ).label("failures"),
            )
            .join(
                latest,
                sa.and_(
                    latest.c.event_id == actions.c.event_id,
                    latest.c.rule_id == actions.c.rule_id,
                    latest.c.at == actions.c.created_at,
                ),
            )
            .group_by(actions.c.event_id, actions.c.rule_id)
            .subquery()
        )
        done = await conn.execute(
            sa.select(
                per_event.c.rule_id,
                sa.func.sum(sa.case((per_event.c.unfinished == 0, 1), else_=0)),
                sa.func.sum(sa.case((per_event.c.failures > 0, 1), else_=0)),
            ).group_by(per_event.c.rule_id)
        )
        for rule_id, succeeded, failed in done:
            entry(rule_id).update(succeeded=int(succeeded or 0), failed=int(failed or 0))
    return stats
