"""Planning: an event in, the rules' decisions and the actions to run out. Pure: no I/O, no clock."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from email_validator import EmailNotValidError, validate_email
from jinja2 import Template

from app.rules.loader import LoadedRules
from app.rules.schema import Rule, SourceConfig, default_approval
from app.rules.templates import Node, PathComparison, PathTemplate, compile_condition, compile_fast, evaluate, render

Decision = Literal["matched", "not_matched", "invalid"]


@dataclass(frozen=True)
class PlannedAction:
    rule_id: str
    seq: int
    kind: str
    params: dict[str, Any]
    contact: dict[str, Any] | None
    approval: str
    # The Systeme.io account it goes to (see RulesFile.account_of).
    account: str = "default"
    # Seconds after the event's time when the step runs (None: at once). A step also waits for the steps before it
    # in its rule, so this is the largest `after` of the step and those before it.
    after: float | None = None
    # high | normal | low (Rule.effective_priority): claim order under a backlog, and the quota's reserve.
    priority: str = "normal"


@dataclass(frozen=True)
class RuleOutcome:
    rule_id: str
    decision: Decision
    reason: str
    contact_email: str | None = None
    actions: tuple[PlannedAction, ...] = ()


@dataclass
class _CompiledRule:
    rule: Rule
    order: int
    condition: Callable[..., Any] | PathComparison | None
    contact: dict[str, Any] | None
    # (kind, compiled params, approval, after)
    actions: list[tuple[str, dict[str, Any], str, float | None]] = field(default_factory=list)


def _compile_tree(value: Any) -> Any:
    if isinstance(value, str):
        return compile_fast(value)
    if isinstance(value, dict):
        return {k: _compile_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_compile_tree(v) for v in value]
    return value


def _render_tree(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, Template | PathTemplate | str):
        return render(value, context)
    if isinstance(value, dict):
        return {k: _render_tree(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, context) for v in value]
    return value


class RuleSet:
    """Compiled rules, indexed by source and event type so unrelated rules cost nothing."""

    def __init__(self, loaded: LoadedRules) -> None:
        self.loaded = loaded
        self.version = loaded.version
        self.sources: dict[str, SourceConfig] = dict(loaded.file.sources)
        self._exact: dict[tuple[str, str], list[_CompiledRule]] = defaultdict(list)
        self._patterns: dict[str, list[tuple[str, _CompiledRule]]] = defaultdict(list)
        self._compiled: dict[str, _CompiledRule] = {}
        for order, rule in enumerate(loaded.file.rules):
            if not rule.enabled:
                continue
            compiled = self._compiled[rule.id] = self._compile(rule, order)
            for on in rule.on:
                source, _, event_type = on.partition("/")
                if event_type and not any(ch in event_type for ch in "*?["):
                    self._exact[(source, event_type)].append(compiled)
                else:
                    self._patterns[source].append((event_type or "*", compiled))

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.loaded.file.rules

    @staticmethod
    def _compile(rule: Rule, order: int) -> _CompiledRule:
        contact = None
        if rule.contact is not None:
            contact = _compile_tree(rule.contact.model_dump(exclude={"update"}, exclude_none=True))
            for condition in ("unless_tagged", "only_if_tagged"):
                if getattr(rule, condition):
                    contact[condition] = compile_fast(getattr(rule, condition))
        compiled = _CompiledRule(
            rule=rule,
            order=order,
            condition=compile_condition(rule.if_) if rule.if_ else None,
            contact=contact,
        )
        after: float | None = None
        for action in rule.actions:
            params = action.model_dump(exclude={"kind", "approval", "after"}, exclude_none=True)
            approval = action.approval or rule.approval or default_approval(action.kind)
            if action.delay is not None:
                after = max(after or 0.0, action.delay)
            compiled.actions.append((action.kind, _compile_tree(params), approval, after))
        return compiled

    def candidates(self, source: str, event_type: str | None) -> list[_CompiledRule]:
        found = list(self._exact.get((source, event_type), ())) if event_type else []
        for pattern, compiled in self._patterns.get(source, ()):
            if pattern == "*" or (event_type is not None and fnmatchcase(event_type, pattern)):
                found.append(compiled)
        unique = {id(c): c for c in found}
        return sorted(unique.values(), key=lambda c: c.order)

    def plan(self, *, source: str, event_type: str | None, payload: Mapping[str, Any]) -> list[RuleOutcome]:
        """Decide, for every rule listening to this source and type, whether it fires and what it would do."""
        context = {"event": Node(payload, "event"), "source": source, "event_type": event_type}
        return [self._judge(c, context) for c in self.candidates(source, event_type)]

    def explain(self, *, source: str, event_type: str | None, payload: Mapping[str, Any]) -> list[RuleOutcome]:
        """Like `plan`, but with an outcome for every rule, saying why the others do not listen."""
        context = {"event": Node(payload, "event"), "source": source, "event_type": event_type}
        listening = {c.rule.id for c in self.candidates(source, event_type)}
        outcomes = []
        for rule in self.rules:
            if not rule.enabled:
                outcomes.append(RuleOutcome(rule.id, "not_matched", "the rule is disabled (enabled: false)"))
            elif rule.id not in listening:
                this = f"{source}/{event_type}" if event_type else source
                reason = f"`on` is {', '.join(rule.on)}; this event is {this}"
                outcomes.append(RuleOutcome(rule.id, "not_matched", reason))
            else:
                outcomes.append(self._judge(self._compiled[rule.id], context))
        return outcomes

    def _judge(self, compiled: _CompiledRule, context: Mapping[str, Any]) -> RuleOutcome:
        """One rule's decision. Whatever the payload holds, a rule's own failure is its outcome, never an error."""
        rule = compiled.rule
        if compiled.condition is not None:
            result = evaluate(compiled.condition, context)
            if result.missing:
                return _outcome(rule.id, "not_matched", f"`if` read {result.missing[0]}, which is missing")
            if result.error is not None:
                why = f"`if` failed: {_describe(result.error)}"
                return _outcome(rule.id, "not_matched", f"{why} ({_values(result.reads)})" if result.reads else why)
            if not result.value:
                return _outcome(rule.id, "not_matched", f"`if` was false: {_values(result.reads) or rule.if_}")
        try:
            return self._plan_actions(compiled, context)
        except Exception as exc:
            return _outcome(rule.id, "invalid", f"a template failed: {_describe(exc)}")

    def _plan_actions(self, compiled: _CompiledRule, context: Mapping[str, Any]) -> RuleOutcome:
        rule = compiled.rule
        account = self.loaded.file.account_of(rule, str(context["source"]))
        contact = None
        email = None
        if compiled.contact is not None and rule.contact is not None:
            rendered = _render_tree(compiled.contact, context)
            email = rendered.get("email", "")
            try:
                email = validate_email(email, check_deliverability=False).normalized.lower()
            except EmailNotValidError as exc:
                return _outcome(rule.id, "invalid", f"contact email {email!r} is empty or invalid: {exc}")
            contact = {"email": email, "update": rule.contact.update, "fields": _contact_fields(rendered)}
            for key in ("locale", "unless_tagged", "only_if_tagged"):
                if rendered.get(key):
                    contact[key] = rendered[key]
        priority = rule.effective_priority
        actions = tuple(
            PlannedAction(
                rule.id, seq, kind, _render_tree(params, context), contact, approval, account, after, priority
            )
            for seq, (kind, params, approval, after) in enumerate(compiled.actions)
        )
        return RuleOutcome(rule.id, "matched", "matched", email, actions)


# Reasons quote payload values; a huge one must not make a huge row.
_MAX_REASON = 500


def _outcome(rule_id: str, decision: Decision, reason: str) -> RuleOutcome:
    return RuleOutcome(rule_id, decision, reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…")


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:_MAX_REASON]}"


def _values(reads: Mapping[str, Any]) -> str:
    return ", ".join(f"{path} was {json.dumps(v, default=str)[:_MAX_REASON]}" for path, v in reads.items())


def _contact_fields(rendered: Mapping[str, Any]) -> dict[str, str]:
    """Contact values by Systeme.io field slug; empty ones are left out so they never overwrite."""
    fields = {"first_name": rendered.get("first_name", ""), "surname": rendered.get("surname", "")}
    fields.update(rendered.get("fields", {}))
    return {slug: value for slug, value in fields.items() if value}
