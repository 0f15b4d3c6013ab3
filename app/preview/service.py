"""Explain: run one event through the rules with no side effects and say, for every rule, what and why."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.actions.contacts import ContactHandle, NoContact
from app.actions.context import StepContext
from app.actions.params import BadParams, parse_params
from app.actions.steps import ERASING, REVOKING, STEPS, tag_condition, unmet_condition
from app.errors import NotFound
from app.preview.calls import describe
from app.preview.readonly import ReadOnlySession
from app.rules.engine import PlannedAction, RuleSet
from app.rules.schema import LOCAL_KINDS
from app.sources import Delivery, parse_delivery
from app.store.models import utcnow
from app.store.schedule import waiting_steps
from app.store.storable import storable, storable_text, storable_time
from app.systeme.client import SystemeClient
from app.systeme.errors import ApiError
from app.timeparse import format_duration


async def _live_action(client: SystemeClient, action: PlannedAction) -> dict[str, Any]:
    """Run the real action code on a session that reads the account and only records the writes."""
    session = ReadOnlySession(client)
    # No mirror: a preview reads everything it would check, as a careful run does.
    handle = ContactHandle(action.contact["email"], None, window=timedelta(0)) if action.contact else None
    ctx = StepContext(session, handle, action.contact, careful=True, create=action.kind not in REVOKING)
    try:
        if action.contact is None or action.kind in ERASING:
            # Erasing neither creates nor updates the contact: only its own lookup is made.
            unmet = await unmet_condition(ctx, action.kind) if action.contact else None
        else:
            unmet = tag_condition(action.contact, (await ctx.contact(facts=True)).tags)
        note = unmet or await STEPS[action.kind](ctx, parse_params(action.kind, action.params))
    except NoContact as exc:
        note = str(exc)
    except ApiError as exc:
        note = f"would fail: {exc.message}"
    except BadParams as exc:
        note = f"would fail: {exc}"
    calls = [c.as_dict() for c in session.writes]
    return {"calls": calls, "note": note, "change": bool(calls)}


def _when(action: PlannedAction, event_time: datetime, now: datetime) -> dict[str, Any]:
    """When the step would run: at once, or its time counted from the event's."""
    if not action.after:
        return {"after": None, "due_at": None, "when": "now"}
    due = event_time + timedelta(seconds=action.after)
    at = due.strftime("%Y-%m-%dT%H:%M:%SZ" if due.second else "%Y-%m-%dT%H:%MZ")
    after = f"{format_duration(action.after)} after the event"
    when = f"at {at}, {after}" if due > now else f"now: {after} was {at}"
    return {"after": action.after, "due_at": due.isoformat(), "when": when}


async def _local_note(action: PlannedAction, engine: AsyncEngine | None) -> str:
    """What a step on our own rows would do: counted in the store when it is at hand, else described."""
    rule = action.params.get("rule")
    email = action.contact["email"] if action.contact else None
    if engine is None or email is None:
        return f"would cancel this contact's pending and scheduled steps of rule {rule} (no Systeme.io request)"
    count = await waiting_steps(engine, email=email, rule=str(rule))
    steps = "step" if count == 1 else "steps"
    return f"would cancel {count} scheduled or pending {steps} of rule {rule} for this contact (no Systeme.io request)"


async def explain(
    rules: RuleSet,
    *,
    source: str,
    delivery: Delivery,
    verify: bool = False,
    client: SystemeClient | None = None,
    engine: AsyncEngine | None = None,
) -> dict[str, Any]:
    """The explain report; with `client` (read-only use) each planned call is marked as a change or a no-op; with
    `engine`, what `cancel_scheduled` would cancel is counted."""
    config = rules.sources.get(source)
    if config is None:
        raise NotFound(f"no source named {source!r} in the rules")
    incoming = parse_delivery(config, delivery, time.time(), verify=verify)
    # The rules judge what ingest would store, so explain shows exactly what a delivery would do.
    payload = storable(incoming.payload)
    event_type = storable_text(incoming.type[:200]) if incoming.type else None
    report: dict[str, Any] = {
        "source": source,
        "event_type": event_type,
        "rules_version": rules.version,
        "signature": "verified" if verify else "not checked",
        "live": client is not None,
        "ping": incoming.ping,
        "rules": [],
    }
    if incoming.ping:
        return report  # a provider's set-up check: answered 200 and never judged
    now = utcnow()
    # As ingest would store it: a delayed step is counted from the event's time (never later than its arrival).
    event_time = min(storable_time(incoming.occurred_at) or now, now)
    for outcome in rules.explain(source=source, event_type=event_type, payload=payload):
        entry: dict[str, Any] = {
            "rule": outcome.rule_id,
            "matched": outcome.decision == "matched",
            "decision": outcome.decision,
            "reason": outcome.reason,
            "contact": outcome.actions[0].contact if outcome.actions else None,
            "actions": [],
        }
        for action in outcome.actions:
            item: dict[str, Any] = {"kind": action.kind, "params": action.params, "approval": action.approval}
            item.update(_when(action, event_time, now))
            if action.kind in LOCAL_KINDS:
                item.update(calls=[], note=await _local_note(action, engine), change=None)
            elif client is not None:
                item.update(await _live_action(client, action))
            else:
                item["calls"] = [c.as_dict() for c in describe(action)]
            entry["actions"].append(item)
        report["rules"].append(entry)
    return report


def render_text(report: dict[str, Any]) -> str:
    """The report for a terminal: one block per rule, calls indented under their action."""
    this = f"{report['source']}/{report['event_type']}" if report["event_type"] else report["source"]
    lines = [f"event {this} (rules {report['rules_version']}, signature {report['signature']})", ""]
    if report.get("ping"):
        lines.append("a set-up ping from the provider: answered 200, nothing stored, no rule runs")
    for rule in report["rules"]:
        mark = "MATCH" if rule["matched"] else "no   "
        lines.append(f"{mark} {rule['rule']}: {rule['reason']}")
        if rule["contact"]:
            lines.append(f"      contact {json.dumps(rule['contact'])}")
        for action in rule["actions"]:
            note = f"  ({action['note']})" if action.get("note") else ""
            when = f"  {action['when']}" if action.get("after") else ""
            lines.append(
                f"      {action['kind']} {json.dumps(action['params'])} approval={action['approval']}{when}{note}"
            )
            for call in action["calls"]:
                body = f" {json.dumps(call['body'])}" if call["body"] else ""
                change = {True: "change", False: "read", None: "maybe"}[call["change"]]
                lines.append(f"        [{change}] {call['method']} {call['path']}{body}  {call['note']}".rstrip())
    return "\n".join(lines)
