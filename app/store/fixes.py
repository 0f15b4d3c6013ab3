"""Actions planned again by a reconcile: new rows beside the old ones of their event, as a replay adds them.

A new row takes the original's `order_key`, its place in event order, as a replay's rows do: an event that
occurred after the original (a refund arriving late) still comes after the fix, in the runs and in the next
reconcile's net effect (which orders equal keys by id, so the fix comes after the action it redoes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.contacts import distrust_contact
from app.store.models import actions, new_id, rule_outcomes
from app.store.statuses import ActionStatus, Priority

# What a new action takes from the one it redoes.
_COPIED = ("event_id", "rule_id", "seq", "kind", "params", "contact", "contact_email", "account", "order_key")


@dataclass(frozen=True)
class Redo:
    action_id: str  # the action whose effect is missing from the account
    approval: str  # "auto", or "required": the new action waits for an operator
    why: str  # what the reconcile found, for the record


@dataclass(frozen=True)
class Planned:
    actions: list[dict[str, Any]]  # id, status, kind, params, contact_email, account, event_id, rule_id, redoes
    runs: list[str]  # the first pending action of each run (event and contact), to hand to the executor


async def plan_again(
    engine: AsyncEngine, redos: Sequence[Redo], *, note: str, now: datetime, approval_window: timedelta
) -> Planned:
    """Insert one new action per redo (a copy of the original, with `note`), a rule outcome per event, rule and
    contact saying so (marked like a replay's), and make the runs read these contacts again instead of trusting
    the mirror's facts (which may still say they have what they lost)."""
    wanted = {r.action_id: r for r in redos}
    async with engine.begin() as conn:
        originals = await conn.execute(
            sa.select(actions)
            .where(actions.c.id.in_(wanted), actions.c.contact_email.is_not(None))
            .order_by(actions.c.order_key, actions.c.id)
        )
        rows: list[dict[str, Any]] = []
        redoes: dict[str, str] = {}
        reasons: dict[tuple[str, str, str], list[str]] = {}
        for original in originals:
            redo = wanted[original.id]
            status = ActionStatus.AWAITING_APPROVAL if redo.approval == "required" else ActionStatus.PENDING
            row = {column: getattr(original, column) for column in _COPIED}
            row.update(
                id=new_id("act"),
                approval=redo.approval,
                status=status,
                attempts=0,
                next_attempt_at=now if status == ActionStatus.PENDING else None,
                created_at=now,
                updated_at=now,
                approval_deadline=now + approval_window if status == ActionStatus.AWAITING_APPROVAL else None,
                note=note,
                # The service's own traffic: a reconcile during a launch never takes a buyer's turn or quota.
                priority=Priority.LOW.rank,
            )
            rows.append(row)
            redoes[row["id"]] = original.id
            key = (original.event_id, original.rule_id, original.contact_email)
            reasons.setdefault(key, []).append(f"{original.kind} ({redo.why})")
        if not rows:
            return Planned([], [])
        await conn.execute(actions.insert(), rows)
        await conn.execute(
            rule_outcomes.insert(),
            [
                {
                    "event_id": event_id,
                    "rule_id": rule_id,
                    "decision": "matched",
                    "reason": f"{note}: planned again {', '.join(what)}"[:500],
                    "contact_email": email,
                    # Marked as a replay's are: the event page shows it as a later judgement, and backtest leaves
                    # these actions out of what was planned when the event arrived.
                    "replayed_at": now,
                }
                for (event_id, rule_id, email), what in reasons.items()
            ],
        )
        for account, email in sorted({(r["account"], r["contact_email"]) for r in rows}):
            await distrust_contact(conn, account, email)
    firsts: dict[tuple[str, str], tuple[str, str]] = {}
    for row in rows:
        if row["status"] == ActionStatus.PENDING:
            run = (row["event_id"], row["contact_email"])
            firsts[run] = min(firsts.get(run, (row["order_key"], row["id"])), (row["order_key"], row["id"]))
    shown = ("id", "status", "kind", "params", "contact_email", "account", "event_id", "rule_id")
    planned = [{k: row[k] for k in shown} | {"redoes": redoes[row["id"]]} for row in rows]
    return Planned(planned, [action_id for _, action_id in sorted(firsts.values())])
