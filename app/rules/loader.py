"""Read a rules file: YAML 1.2 with positions, `${VAR}` substitution, and one problem line per mistake.

This module parses and validates, section by section; where a problem is (app/rules/positions.py) and `${VAR}`
expansion (app/rules/variables.py) are their own modules."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from app.errors import RulesError
from app.rules.messages import yaml_error
from app.rules.positions import report, strings_at
from app.rules.problems import Problem, Problems, own_position, position, suggest
from app.rules.schema import (
    ACTION_KINDS,
    ACTION_MODELS,
    DEFAULT_ACCOUNT,
    ID_PATTERN,
    NO_PARAMS,
    SHORTHAND,
    STEP_OPTIONS,
    AccountConfig,
    Action,
    Rule,
    RulesFile,
    SourceConfig,
    _Action,
    contact_problem,
)
from app.rules.source_config import PAYMENT_EXPRESSIONS
from app.rules.templates import TemplateError, compile_expression, compile_template
from app.rules.variables import Expander, variables_in

_ACTION = TypeAdapter[Action](Action)
TOP_KEYS = ("version", "accounts", "sources", "rules")
_CREDENTIALS = ("secret", "token")


@dataclass(frozen=True)
class LoadedRules:
    file: RulesFile
    version: str  # content hash, recorded on each event the rules judged
    path: str
    warnings: tuple[Problem, ...] = ()
    # Where each rule (by id) and account (as "account 'name'") starts, for problems found later (`check --live`).
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def load_rules(path: str | Path, env: Mapping[str, str], *, strict_env: bool = True) -> LoadedRules:
    """Load and validate a rules file, raising `RulesError` with every problem found."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        # Usually a command run outside the service's folder: say where a rules file comes from.
        hint = (
            " (run from the folder that holds it, set RULES_FILE, or write one with `systeme-flow init`)"
            if isinstance(exc, FileNotFoundError)
            else ""
        )
        raise RulesError([f"{path}:1:1: cannot read the rules file: {exc.strerror}{hint}"]) from exc
    return parse_rules(text, path=path, env=env, strict_env=strict_env)


def parse_rules(text: str, *, path: str, env: Mapping[str, str], strict_env: bool = True) -> LoadedRules:
    """Validate rules text. With `strict_env=False` an unset `${VAR}` is a warning, so CI can check without secrets."""
    problems = Problems(path)
    yaml = YAML(typ="rt")  # round-trip mode keeps line and column of every node; YAML 1.2 by default
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        where, message = yaml_error(exc)
        problems.add(where, "", message)
        raise RulesError([str(p) for p in problems.items]) from exc
    if not isinstance(doc, CommentedMap):
        problems.add((1, 1), "", "the rules file must be a mapping with `version`, `sources` and `rules`")
        raise RulesError([str(p) for p in problems.items])
    loader = _Loader(problems, env, strict_env)
    rules_file = loader.validate(doc)
    found = problems.in_order()
    if problems.errors or rules_file is None:
        raise RulesError([str(p) for p in found])
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    warnings = tuple(p for p in found if p.severity != "error")
    return LoadedRules(file=rules_file, version=version, path=path, warnings=warnings, positions=loader.positions)


class _Loader:
    def __init__(self, problems: Problems, env: Mapping[str, str], strict_env: bool) -> None:
        self.problems = problems
        self.vars = Expander(problems, env, strict_env)
        self.positions: dict[str, tuple[int, int]] = {}
        # Every rule id in the file, for `cancel_scheduled` (which may name a rule written below it).
        self.rule_ids: list[str] = []

    def validate(self, doc: CommentedMap) -> RulesFile | None:
        for key in doc:
            if key not in TOP_KEYS:
                self.problems.add(
                    position(doc, key, of_key=True), "", f"unknown key `{key}`{suggest(str(key), TOP_KEYS)}"
                )
        if "version" not in doc:
            self.problems.add((1, 1), "", "missing `version: 1`")
        elif doc["version"] != 1:
            self.problems.add(position(doc, "version"), "", f"unsupported version {doc['version']!r}: expected 1")
        accounts = self._accounts(doc.get("accounts"), doc)
        raw_sources = doc.get("sources")
        sources = self._sources(raw_sources, doc)
        # Rules are checked against every named source, even one that failed validation, to report each once.
        names = {str(n) for n in raw_sources} if isinstance(raw_sources, CommentedMap) else set()
        rules = self._rules(doc.get("rules") or CommentedSeq(), names)
        self._account_names(doc, {DEFAULT_ACCOUNT, *accounts})
        if self.problems.errors:
            return None
        return RulesFile(version=1, accounts=accounts, sources=sources, rules=tuple(rules))

    def _accounts(self, raw: Any, doc: CommentedMap) -> dict[str, AccountConfig]:
        if raw is None:
            return {}
        if not isinstance(raw, CommentedMap):
            self.problems.add(position(doc, "accounts"), "", "`accounts` must be a mapping of names to accounts")
            return {}
        accounts: dict[str, AccountConfig] = {}
        for name, body in raw.items():
            subject = f"account '{name}'"
            self.positions[subject] = position(raw, name, of_key=True)  # for `check --live`
            if not re.fullmatch(ID_PATTERN, str(name)) or len(str(name)) > 100:
                self.problems.add(
                    position(raw, name, of_key=True), subject, "use letters, digits, `-`, `_` or `.` (at most 100)"
                )
            variables = variables_in(body, ("api_key",))
            self.vars.substitute(body, subject)
            try:
                accounts[str(name)] = config = AccountConfig.model_validate(
                    dict(body) if isinstance(body, dict) else body
                )
            except ValidationError as exc:
                report(self.problems, exc, body, subject, AccountConfig)
                continue
            self.vars.placeholder(body, "api_key", (config.api_key or "",), subject, variables.get("api_key", []))
        return accounts

    def _account_names(self, doc: CommentedMap, known: set[str]) -> None:
        """Every `account:` a source or rule names must be one of `accounts:` (or `default`, the settings' own)."""
        places: list[tuple[Any, str]] = []
        if isinstance(doc.get("sources"), CommentedMap):
            places += [(body, f"source '{name}'") for name, body in doc["sources"].items()]
        if isinstance(doc.get("rules"), CommentedSeq):
            places += [
                (body, f"rule '{body.get('id', '?')}'") for body in doc["rules"] if isinstance(body, CommentedMap)
            ]
        for body, subject in places:
            if isinstance(body, CommentedMap) and "account" in body and str(body["account"]) not in known:
                hint = suggest(str(body["account"]), sorted(known)) or f" (accounts: {', '.join(sorted(known))})"
                self.problems.add(position(body, "account"), subject, f"unknown account `{body['account']}`{hint}")

    def _sources(self, raw: Any, doc: CommentedMap) -> dict[str, SourceConfig]:
        if not isinstance(raw, CommentedMap) or not raw:
            where = position(doc, "sources") if "sources" in doc else (1, 1)
            self.problems.add(where, "", "`sources` must name at least one source")
            return {}
        sources: dict[str, SourceConfig] = {}
        for name, body in raw.items():
            subject = f"source '{name}'"
            if not re.fullmatch(ID_PATTERN, str(name)) or len(str(name)) > 100:
                # It becomes a URL path segment (/hooks/<name>) and a stored column.
                self.problems.add(
                    position(raw, name, of_key=True), subject, "use letters, digits, `-`, `_` or `.` (at most 100)"
                )
            # Which `${VAR}` each credential came from, to name it when its value is a placeholder.
            variables = variables_in(body, _CREDENTIALS)
            self.vars.substitute(body, subject)
            self._payment_expressions(body, subject)
            try:
                sources[str(name)] = config = SourceConfig.model_validate(
                    dict(body) if isinstance(body, dict) else body
                )
            except ValidationError as exc:
                report(self.problems, exc, body, subject, SourceConfig)
                continue
            # An example value (`replace_me`, often from an unedited .env) would let anyone post: refused at load.
            for key, values in (("secret", config.secret), ("token", (config.token or "",))):
                self.vars.placeholder(body, key, values, subject, variables.get(key, []))
        return sources

    def _payment_expressions(self, body: Any, subject: str) -> None:
        """A source's `payment:` expressions are compiled at load, each error placed where it is written."""
        payment = body.get("payment") if isinstance(body, CommentedMap) else None
        if not isinstance(payment, CommentedMap):
            return
        for key in PAYMENT_EXPRESSIONS:
            text = payment.get(key)
            if isinstance(text, str):
                try:
                    compile_expression(text, f"`payment.{key}`")
                except TemplateError as exc:
                    self.problems.add(position(payment, key), subject, str(exc))

    def _rules(self, raw: Any, source_names: set[str]) -> list[Rule]:
        if not isinstance(raw, CommentedSeq):
            self.problems.add(own_position(raw), "", "`rules` must be a list")
            return []
        rules: list[Rule] = []
        seen: set[str] = set()
        self.rule_ids = [str(b["id"]) for b in raw if isinstance(b, CommentedMap) and "id" in b]
        for index, body in enumerate(raw):
            rule_id = str(body.get("id", f"#{index + 1}")) if isinstance(body, CommentedMap) else f"#{index + 1}"
            subject = f"rule '{rule_id}'"
            if not isinstance(body, CommentedMap):
                self.problems.add(position(raw, index), subject, "a rule must be a mapping")
                continue
            if rule_id in seen:
                self.problems.add(position(body, "id"), subject, "duplicate rule id")
            seen.add(rule_id)
            self.vars.substitute(body, subject)
            self.positions[rule_id] = position(raw, index)
            rule = self._rule(body, subject, source_names)
            if rule is not None:
                rules.append(rule)
        return rules

    def _rule(self, body: CommentedMap, subject: str, source_names: set[str]) -> Rule | None:
        reported = len(self.problems.items)
        data = dict(body)
        data["actions"] = self._actions(body.get("actions"), subject)
        # An action already reported as broken should not also count as "no actions".
        skip = (("actions",),) if len(self.problems.items) > reported else ()
        on = body.get("on")
        for name in [on] if isinstance(on, str) else on if isinstance(on, list) else []:
            source = str(name).split("/", 1)[0]
            if source not in source_names:
                hint = suggest(source, source_names)
                self.problems.add(position(body, "on"), subject, f"`on: {name}` names an unknown source{hint}")
        # Checked on the raw nodes, so a broken template is reported in the same run as any other problem.
        self._templates(body, subject)
        try:
            return Rule.model_validate(data)
        except ValidationError as exc:
            report(self.problems, exc, body, subject, Rule, skip=skip)
            if not any(err["loc"] == () for err in exc.errors()):
                # The rule-wide check runs only once every field is valid: make it now, for one complete report.
                actions = body.get("actions") if isinstance(body.get("actions"), list) else []
                kinds = [str(k) for a in actions if isinstance(a, dict) for k in a if k not in STEP_OPTIONS]
                tag_conditions = bool(body.get("unless_tagged") or body.get("only_if_tagged"))
                problem = contact_problem(kinds, has_contact="contact" in body, tag_conditions=tag_conditions)
                if problem:
                    self.problems.add(own_position(body), subject, problem)
            return None

    def _templates(self, body: CommentedMap, subject: str) -> None:
        """Jinja syntax errors are load errors, reported where they are, not surprises at the first event."""
        condition = body.get("if")
        if isinstance(condition, str):
            try:
                compile_expression(condition)
            except TemplateError as exc:
                self.problems.add(position(body, "if"), subject, str(exc))
        for key in ("contact", "unless_tagged", "only_if_tagged", "actions"):
            if key not in body:
                continue
            for where, text in strings_at(body, key):
                try:
                    compile_template(text)
                except TemplateError as exc:
                    self.problems.add(where, subject, str(exc))

    def _actions(self, raw: Any, subject: str) -> list[dict[str, Any]]:
        """`- tag: NAME` becomes `{"kind": "tag", "name": NAME}` so one discriminated union validates it; `after` and
        `approval` may sit beside the action's name as well as among its parameters."""
        if not isinstance(raw, CommentedSeq):
            return []
        actions: list[dict[str, Any]] = []
        for index, item in enumerate(raw):
            where = position(raw, index)
            names = [k for k in item if k not in STEP_OPTIONS] if isinstance(item, dict) else []
            kinds = [k for k in names if k in ACTION_KINDS]
            if len(names) == 1 and not kinds:
                hint = suggest(str(names[0]), ACTION_KINDS) or f" (known: {', '.join(ACTION_KINDS)})"
                self.problems.add(where, subject, f"unknown action `{names[0]}`{hint}")
                continue
            if len(kinds) != 1:
                self.problems.add(where, subject, "each action is a mapping with one key, the action's name")
                continue
            kind = kinds[0]
            for extra in (k for k in names if k != kind):
                message = f"unknown key `{extra}` beside `{kind}`{suggest(str(extra), STEP_OPTIONS)}"
                self.problems.add(position(item, extra, of_key=True), subject, message)
            params = item[kind]
            options = self._options(item, params, subject)
            if options is None or len(names) > 1:
                continue
            if kind in NO_PARAMS and not isinstance(params, dict):
                if params is not None:
                    self.problems.add(where, subject, f"`{kind}` takes no parameters: write `- {kind}:` alone")
                    continue
                params = {}
            if not isinstance(params, dict):
                params = {SHORTHAND.get(kind, "value"): params}
            data = {"kind": kind, **dict(params), **options}
            try:
                _ACTION.validate_python(data)
            except ValidationError as exc:
                node = params if isinstance(params, CommentedMap) else item
                report(self.problems, exc, node, subject, ACTION_MODELS[kind])
                continue
            if kind == "cancel_scheduled" and str(data["rule"]) not in self.rule_ids:
                named = str(data["rule"])
                at = position(params, "rule") if isinstance(params, CommentedMap) else position(item, kind)
                message = f"`cancel_scheduled` names rule '{named}', which is not in this file"
                self.problems.add(at, subject, message + suggest(named, self.rule_ids))
                continue
            actions.append(data)
        return actions

    def _options(self, item: Any, params: Any, subject: str) -> dict[str, Any] | None:
        """The `after` / `approval` written beside the action's name; None when one of them is wrong."""
        options = {str(k): item[k] for k in item if k in STEP_OPTIONS}
        if not options:
            return options
        twice = [k for k in options if isinstance(params, dict) and k in params]
        for key in twice:
            self.problems.add(position(item, key, of_key=True), subject, f"`{key}` is given twice: beside and inside")
        try:
            _Action.model_validate(options)
        except ValidationError as exc:
            report(self.problems, exc, item, subject, _Action)
            return None
        return None if twice else options
