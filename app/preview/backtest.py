"""Backtest: replay stored events through a rules file, without side effects, and diff against what was planned."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.rules.engine import RuleSet
from app.store.models import actions, events, rule_outcomes

_BATCH = 500


def _key(rule_id: str, kind: str, params: Any) -> str:
    return f"{rule_id}: {kind} {json.dumps(params, sort_keys=True)}"


async def backtest(engine: AsyncEngine, rules: RuleSet, *, since: datetime) -> dict[str, Any]:
    """Per event: rules that would now match more or fewer, actions added or removed; and the totals."""
    changed: list[dict[str, Any]] = []
    examined = 0
    totals: Counter[str] = Counter()
    cursor = ""
    async with engine.connect() as conn:
        while True:
            batch = list(
                await conn.execute(
                    sa.select(events.c.id, events.c.source, events.c.type, events.c.payload, events.c.received_at)
                    .where(events.c.received_at >= since, events.c.id > cursor)
                    .order_by(events.c.id)
                    .limit(_BATCH)
                )
            )
            if not batch:
                break
            cursor = batch[-1].id
            ids = [e.id for e in batch]
            # "At the time" is the planning made when the event arrived: a replay's outcomes are marked, and
            # its actions were created when it ran, after the event's first replay began.
            matched_then: dict[str, set[str]] = {i: set() for i in ids}
            first_replay: dict[str, datetime] = {}
            for row in await conn.execute(
                sa.select(
                    rule_outcomes.c.event_id,
                    rule_outcomes.c.rule_id,
                    rule_outcomes.c.decision,
                    rule_outcomes.c.replayed_at,
                ).where(rule_outcomes.c.event_id.in_(ids))
            ):
                if row.replayed_at is not None:
                    first_replay[row.event_id] = min(row.replayed_at, first_replay.get(row.event_id, row.replayed_at))
                elif row.decision == "matched":
                    matched_then[row.event_id].add(row.rule_id)
            planned_then: dict[str, Counter[str]] = {i: Counter() for i in ids}
            for row in await conn.execute(
                sa.select(
                    actions.c.event_id, actions.c.rule_id, actions.c.kind, actions.c.params, actions.c.created_at
                ).where(actions.c.event_id.in_(ids))
            ):
                replayed = first_replay.get(row.event_id)
                if replayed is None or row.created_at < replayed:
                    planned_then[row.event_id][_key(row.rule_id, row.kind, row.params)] += 1
            for event in batch:
                examined += 1
                outcomes = rules.plan(source=event.source, event_type=event.type, payload=event.payload)
                matched_now = {o.rule_id for o in outcomes if o.decision == "matched"}
                planned_now = Counter(_key(a.rule_id, a.kind, a.params) for o in outcomes for a in o.actions)
                diff = {
                    "event_id": event.id,
                    "source": event.source,
                    "type": event.type,
                    "received_at": event.received_at.isoformat(),
                    "rules_gained": sorted(matched_now - matched_then[event.id]),
                    "rules_lost": sorted(matched_then[event.id] - matched_now),
                    "actions_added": sorted((planned_now - planned_then[event.id]).elements()),
                    "actions_removed": sorted((planned_then[event.id] - planned_now).elements()),
                }
                if any(diff[k] for k in ("rules_gained", "rules_lost", "actions_added", "actions_removed")):
                    changed.append(diff)
                    for k in ("rules_gained", "rules_lost", "actions_added", "actions_removed"):
                        totals[k] += len(diff[k])
    return {
        "rules_version": rules.version,
        "since": since.isoformat(),
        "events": examined,
        "events_changed": len(changed),
        "totals": {k: totals[k] for k in ("rules_gained", "rules_lost", "actions_added", "actions_removed")},
        "changes": changed,
    }


def render_text(report: dict[str, Any]) -> str:
    totals = report["totals"]
    lines = [
        f"{report['events']} events since {report['since']} replayed through rules {report['rules_version']}: "
        f"{report['events_changed']} would change",
        f"  rules: +{totals['rules_gained']} matched, -{totals['rules_lost']} no longer matched; "
        f"actions: +{totals['actions_added']} added, -{totals['actions_removed']} removed",
    ]
    for change in report["changes"]:
        this = f"{change['source']}/{change['type']}" if change["type"] else change["source"]
        lines.append(f"{change['event_id']} {this} at {change['received_at']}")
        lines += [f"  + rule {r}" for r in change["rules_gained"]] + [f"  - rule {r}" for r in change["rules_lost"]]
        lines += [f"  + {a}" for a in change["actions_added"]] + [f"  - {a}" for a in change["actions_removed"]]
    return "\n".join(lines)
