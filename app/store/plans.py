"""Plans of events stored unplanned: the rules' judgement, written once, whoever plans first."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes
from app.rules.engine import RuleOutcome
from app.store.bulk import insert_many
from app.store.events import action_rows, arrival_modes, outcome_rows, runs_of
from app.store.fires import fires_of, hold_past_limit, recent_fires
from app.store.models import actions, events, rule_outcomes


@dataclass(frozen=True)
class Unplanned:
    """A stored event waiting for its plan: what the rules read, and the times its actions are ordered by."""

    event_id: str
    source: str
    event_type: str | None
    payload: Mapping[str, Any]
    occurred_at: datetime | None
    received_at: datetime
    # The mode it arrived under (app/accounts/modes.py); its default account's actions are planned under it.
    mode: str | None = None


Judge = Callable[[Unplanned], Sequence[RuleOutcome] | None]


async def record_plans(
    engine: AsyncEngine,
    pending: Sequence[Unplanned],
    judge: Judge,
    *,
    rules_version: str,
    now: datetime,
    approval_window: timedelta,
    modes: Modes | None = None,
    fires_per_contact: int | None = None,
    held: list[str] | None = None,
    priorities: dict[str, int] | None = None,
) -> tuple[int, list[str]]:
    """Judge and store, in one transaction, the plans of those of `pending` not planned yet: (events planned, the
    runs to dispatch).

    An event is claimed by the update that sets its `planned_at` from null, before it is judged: an event another
    planner got to first (the sweep of another process, a replay) costs neither a judgement nor a row, and no event
    is ever planned twice. One `judge` returns None for (an error, logged by it) is released, unplanned, for a
    later sweep. The rows are the ones ingest wrote when it planned before the answer: times count from arrival.

    With `fires_per_contact`, the actions of a rule past that many fires for one contact in the hour wait for
    approval (see app/store/fires.py); one line per (rule, contact) held is appended to `held`. `priorities`
    receives each run's priority rank (its most urgent action's), for the dispatch.
    """
    if not pending:
        return 0, []
    new_outcomes: list[dict[str, Any]] = []
    new_actions: list[dict[str, Any]] = []
    judged: list[tuple[str, Sequence[RuleOutcome]]] = []
    deadlines: dict[str, datetime] = {}
    async with engine.begin() as conn:
        result = await conn.execute(
            events.update()
            .where(events.c.id.in_([event.event_id for event in pending]), events.c.planned_at.is_(None))
            .values(planned_at=now, rules_version=rules_version)
            .returning(events.c.id)
        )
        claimed = set(result.scalars())
        unjudged = []
        for event in pending:
            if event.event_id not in claimed:
                continue
            outcomes = judge(event)
            if outcomes is None:
                unjudged.append(event.event_id)
                continue
            new_outcomes += outcome_rows(event.event_id, outcomes)
            deadlines[event.event_id] = event.received_at + approval_window
            new_actions += action_rows(
                event.event_id,
                outcomes,
                now=event.received_at,
                occurred_at=event.occurred_at or event.received_at,
                approval_deadline=deadlines[event.event_id],
                modes=arrival_modes(modes, event.mode),
            )
            judged.append((event.event_id, outcomes))
        if fires_per_contact is not None:
            wanted = {fire for _, outcomes in judged for fire in fires_of(outcomes)}
            known = await recent_fires(conn, wanted, now=now)
            lines = hold_past_limit(judged, new_actions, known, limit=fires_per_contact, deadlines=deadlines)
            if held is not None:
                held += lines
        # Runs per event, after the limit: an action held for approval starts no run.
        by_event: dict[str, list[dict[str, Any]]] = {}
        for row in new_actions:
            by_event.setdefault(row["event_id"], []).append(row)
        runs = [run for event_id, _ in judged for run in runs_of(by_event.get(event_id, []))]
        if priorities is not None:
            for event_id, _ in judged:
                rows = by_event.get(event_id, [])
                for run in runs_of(rows):
                    first = next(r for r in rows if r["id"] == run)
                    same = [r["priority"] for r in rows if r["contact_email"] == first["contact_email"]]
                    priorities[run] = min(same, default=first["priority"])
        if unjudged:
            await conn.execute(events.update().where(events.c.id.in_(unjudged)).values(planned_at=None))
        await insert_many(conn, rule_outcomes, new_outcomes)
        await insert_many(conn, actions, new_actions)
    return len(claimed) - len(unjudged), runs


async def unplanned_events(engine: AsyncEngine, *, received_before: datetime, limit: int) -> list[Unplanned]:
    """Events stored but never planned (their process stopped between the answer and the plan), oldest first."""
    query = (
        sa.select(
            events.c.id,
            events.c.source,
            events.c.type,
            events.c.payload,
            events.c.occurred_at,
            events.c.received_at,
            events.c.mode,
        )
        .where(events.c.planned_at.is_(None), events.c.received_at < received_before)
        .order_by(events.c.received_at)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Unplanned(r.id, r.source, r.type, dict(r.payload), r.occurred_at, r.received_at, r.mode) for r in rows]
