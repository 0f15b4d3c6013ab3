"""What the rules page shows: each rule's trigger and effects, and the sample events its test box offers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from app.errors import BadRequest, NotFound
from app.rules.engine import RuleSet
from app.rules.schema import Rule, default_approval
from app.samples import find_sample, samples_for
from app.webhooks.body import FORM_SOURCES


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def describe_action(rule: Rule, action: Any) -> str:
    """`tag: Masterclass buyer`, `enroll: course 101, access full_access · approval required`, `... · after 7d`."""
    params = action.model_dump(exclude={"kind", "approval", "after"}, exclude_none=True)
    if not params:
        text = str(action.kind)
    elif len(params) == 1:
        text = f"{action.kind}: {_value(next(iter(params.values())))}"
    else:
        text = f"{action.kind}: " + ", ".join(f"{key} {_value(value)}" for key, value in params.items())
    # The engine's default: cancel_subscription and delete_contact wait for an operator unless a rule says auto.
    approval = action.approval or rule.approval or default_approval(action.kind)
    text += " · approval required" if approval == "required" else ""
    return text + (f" · after {action.after}" if action.after else "")


def rule_rows(rules: RuleSet) -> list[dict[str, Any]]:
    rows = []
    for rule in rules.rules:
        conditions = [f"unless tagged {rule.unless_tagged}"] if rule.unless_tagged else []
        conditions += [f"only if tagged {rule.only_if_tagged}"] if rule.only_if_tagged else []
        rows.append(
            {
                "id": rule.id,
                "description": rule.description,
                "enabled": rule.enabled,
                "on": list(rule.on),
                "if": rule.if_,
                "contact": rule.contact.email if rule.contact else None,
                "conditions": conditions,
                "actions": [describe_action(rule, action) for action in rule.actions],
            }
        )
    return rows


def sample_menu(rules: RuleSet) -> dict[str, list[str]]:
    """Source name -> the names of the samples of its type."""
    return {name: [s.name for s in samples_for(config.type)] for name, config in rules.sources.items()}


def prefill(rules: RuleSet, source: str, sample: str) -> tuple[str, str]:
    """The payload (JSON) and headers (one per line) of a sample, for the test box."""
    config = rules.sources.get(source)
    if config is None:
        raise NotFound(f"no source {source!r} in the rules")
    found = find_sample(config.type, sample)
    headers = "\n".join(f"{name}: {value}" for name, value in found.headers.items())
    return json.dumps(found.payload, indent=2, ensure_ascii=False), headers


def header_lines(text: str) -> dict[str, str]:
    headers = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise BadRequest(f"header line {line.strip()!r}: expected Name: value")
        headers[name.strip().lower()] = value.strip()
    return headers


def test_body(source_type: str, payload: str) -> tuple[bytes, str]:
    """The box holds JSON; sources that take form posts get it form-encoded, as a browser would send it."""
    value = json.loads(payload)
    if source_type in FORM_SOURCES and isinstance(value, dict):
        return urlencode(value, doseq=True).encode(), "application/x-www-form-urlencoded"
    return json.dumps(value).encode(), "application/json"
