"""`reconcile --fix`: the missing actions planned again, through approval where they need it, and handed over.

What is fixed is the net effect, never an older step: the drift names the last action on its target, so a tag a
refund removed on purpose is not put back. Left alone, and said so: a contact deleted in Systeme.io (perhaps on
its owner's request) unless `recreate`, and an action whose rule is gone from the rules file or disabled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.pipeline.dispatch import Dispatcher
from app.reconcile.check import Drift
from app.rules.schema import Rule, RulesFile, default_approval
from app.store.fixes import Redo, plan_again
from app.store.models import utcnow
from app.store.statuses import Priority

log = logging.getLogger(__name__)


@dataclass
class Choice:
    fix: list[Drift] = field(default_factory=list)
    left: list[tuple[Drift, str]] = field(default_factory=list)  # with the reason it is not fixed


def _approval(rule: Rule, drift: Drift) -> str:
    """Required when the original action waited for an operator, or when the rule would make it wait now."""
    seq = drift.last.seq
    action = rule.actions[seq] if seq < len(rule.actions) and rule.actions[seq].kind == drift.last.kind else None
    # As in planning (cancel_subscription, delete_contact are required); reconcile never plans those, but it stands.
    default = default_approval(drift.last.kind)
    now = (action.approval if action is not None else None) or rule.approval or default
    return "required" if "required" in (drift.last.approval, now) else "auto"


def choose(drifts: Sequence[Drift], rules: RulesFile, *, recreate: bool = False) -> tuple[Choice, dict[str, str]]:
    """Which drifts to fix, and the approval each new action needs (by the id of the action it redoes)."""
    by_id = {rule.id: rule for rule in rules.rules}
    choice, approvals = Choice(), {}
    for drift in drifts:
        rule = by_id.get(drift.last.rule_id)
        if drift.kind == "contact_deleted" and not recreate:
            choice.left.append((drift, "the contact was deleted in Systeme.io; --recreate creates it again"))
        elif rule is None:
            choice.left.append((drift, f"rule {drift.last.rule_id!r} is no longer in the rules file"))
        elif not rule.enabled:
            choice.left.append((drift, f"rule {drift.last.rule_id!r} is disabled"))
        elif drift.last.id not in approvals:
            choice.fix.append(drift)
            approvals[drift.last.id] = _approval(rule, drift)
    return choice, approvals


async def fix(
    engine: AsyncEngine,
    dispatcher: Dispatcher | None,
    drifts: Sequence[Drift],
    approvals: dict[str, str],
    *,
    by: str,
    approval_window: timedelta,
) -> list[dict[str, Any]]:
    """Plan the drifts' actions again (note "reconcile by BY") and hand the runs to the executor."""
    redos = [Redo(d.last.id, approvals[d.last.id], d.why) for d in drifts]
    planned = await plan_again(engine, redos, note=f"reconcile by {by}", now=utcnow(), approval_window=approval_window)
    if dispatcher is not None and planned.runs:
        try:
            await dispatcher.dispatch([(action_id, 1) for action_id in planned.runs], priority=Priority.LOW)
        except Exception:
            log.exception("dispatching %d runs failed; the sweep will pick them up", len(planned.runs))
    # Without a dispatcher (no Redis) the running service's sweep picks them up: they are pending and due.
    return planned.actions
