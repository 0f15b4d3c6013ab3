"""Read a rules file: YAML 1.2 with positions, `${VAR}` substitution, and one problem line per mistake."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from app.errors import RulesError
from app.rules.schema import ACTION_KINDS, SHORTHAND, Action, Rule, RulesFile, SourceConfig
from app.rules.templates import TemplateError, compile_expression, compile_template

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ACTION = TypeAdapter[Action](Action)


@dataclass(frozen=True)
class LoadedRules:
    file: RulesFile
    version: str  # content hash, recorded on each event the rules judged
    path: str


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, where: tuple[int, int], subject: str, message: str) -> None:
        prefix = f"{self.path}:{where[0]}:{where[1]}: "
        self.lines.append(prefix + (f"{subject}: " if subject else "") + message)


def load_rules(path: str | Path, env: Mapping[str, str]) -> LoadedRules:
    """Load and validate a rules file, raising `RulesError` with every problem found."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([f"{path}:1:1: cannot read the rules file: {exc.strerror}"]) from exc
    return parse_rules(text, path=path, env=env)


def parse_rules(text: str, *, path: str, env: Mapping[str, str]) -> LoadedRules:
    problems = _Problems(path)
    yaml = YAML(typ="rt")  # round-trip mode keeps line and column of every node; YAML 1.2 by default
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.add(where, "", f"YAML syntax error: {exc.problem or exc.context}")
        raise RulesError(problems.lines) from exc
    if not isinstance(doc, CommentedMap):
        problems.add((1, 1), "", "the rules file must be a mapping with `version`, `sources` and `rules`")
        raise RulesError(problems.lines)
    _substitute(doc, env, problems)
    rules_file = _validate(doc, problems)
    if problems.lines or rules_file is None:
        raise RulesError(problems.lines)
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    return LoadedRules(file=rules_file, version=version, path=path)


def _substitute(node: Any, env: Mapping[str, str], problems: _Problems) -> None:
    """Replace `${VAR}` inside parsed string values (never in the raw text, so YAML stays intact)."""
    items: list[tuple[Any, Any]]
    if isinstance(node, CommentedMap):
        items = list(node.items())
    elif isinstance(node, CommentedSeq):
        items = list(enumerate(node))
    else:
        return
    for key, value in items:
        if isinstance(value, str) and "${" in value:
            for name in [m for m in _VAR.findall(value) if m not in env]:
                problems.add(_position(node, key), "", f"environment variable {name} is not set")
            # An unset variable stays as written, so it is reported once and not again as an empty secret.
            node[key] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)
        else:
            _substitute(value, env, problems)


def _position(node: Any, key: Any, *, of_key: bool = False) -> tuple[int, int]:
    """Where the value under `key` starts (or the key itself, for complaints about the key)."""
    try:
        if isinstance(node, CommentedMap):
            line, col = node.lc.key(key) if of_key else node.lc.value(key)
        else:
            line, col = node.lc.item(key)
        return int(line) + 1, int(col) + 1
    except (KeyError, TypeError, IndexError, AttributeError):
        return _own_position(node)


def _own_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    return (lc.line + 1, lc.col + 1) if lc is not None and lc.line is not None else (1, 1)


def _locate(node: Any, loc: tuple[int | str, ...], *, of_key: bool = False) -> tuple[int, int]:
    """The position of the deepest node along a pydantic error location."""
    where = _own_position(node)
    for index, part in enumerate(loc):
        key = "if" if part == "if_" else part
        if isinstance(node, CommentedMap) and key in node:
            where, node = _position(node, key, of_key=of_key and index == len(loc) - 1), node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            where, node = _position(node, key), node[key]
        else:
            break
    return where


def _report(
    exc: ValidationError, node: Any, subject: str, problems: _Problems, *, skip: set[tuple[Any, ...]] | None = None
) -> None:
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ACTION_KINDS)
        if skip and loc in skip:
            continue
        field = ".".join(str(p) for p in loc if p != "if_") or ""
        message = err["msg"].removeprefix("Value error, ")
        unknown = err["type"] == "extra_forbidden"
        if unknown:
            message = f"unknown key `{loc[-1]}`"
        elif field:
            message = f"`{field}`: {message}"
        problems.add(_locate(node, loc, of_key=unknown), subject, message)


def _validate(doc: CommentedMap, problems: _Problems) -> RulesFile | None:
    for key in doc:
        if key not in ("version", "sources", "rules"):
            problems.add(_position(doc, key), "", f"unknown top-level key `{key}`")
    if "version" not in doc:
        problems.add((1, 1), "", "missing `version: 1`")
    elif doc["version"] != 1:
        problems.add(_position(doc, "version"), "", f"unsupported version {doc['version']!r}: expected 1")
    raw_sources = doc.get("sources")
    sources = _validate_sources(raw_sources, doc, problems)
    # Rules are checked against every named source, even one that failed validation, to report each once.
    names = {str(n) for n in raw_sources} if isinstance(raw_sources, CommentedMap) else set()
    rules = _validate_rules(doc.get("rules") or CommentedSeq(), names, problems)
    if problems.lines:
        return None
    return RulesFile(version=1, sources=sources, rules=tuple(rules))


def _validate_sources(raw: Any, doc: CommentedMap, problems: _Problems) -> dict[str, SourceConfig]:
    if not isinstance(raw, CommentedMap) or not raw:
        problems.add(
            _position(doc, "sources") if "sources" in doc else (1, 1),
            "",
            "`sources` must name at least one source",
        )
        return {}
    sources: dict[str, SourceConfig] = {}
    for name, body in raw.items():
        try:
            sources[str(name)] = SourceConfig.model_validate(dict(body) if isinstance(body, dict) else body)
        except ValidationError as exc:
            _report(exc, body, f"source '{name}'", problems)
    return sources


def _validate_rules(raw: Any, source_names: set[str], problems: _Problems) -> list[Rule]:
    if not isinstance(raw, CommentedSeq):
        problems.add(_own_position(raw), "", "`rules` must be a list")
        return []
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, body in enumerate(raw):
        rule_id = str(body.get("id", f"#{index + 1}")) if isinstance(body, CommentedMap) else f"#{index + 1}"
        subject = f"rule '{rule_id}'"
        if not isinstance(body, CommentedMap):
            problems.add(_position(raw, index), subject, "a rule must be a mapping")
            continue
        if rule_id in seen:
            problems.add(_position(body, "id"), subject, "duplicate rule id")
        seen.add(rule_id)
        reported = len(problems.lines)
        data = dict(body)
        data["actions"] = _normalise_actions(body.get("actions"), subject, problems)
        # An action already reported as broken should not also count as "no actions".
        skip = {("actions",)} if len(problems.lines) > reported else set()
        on = body.get("on")
        for name in [on] if isinstance(on, str) else on if isinstance(on, list) else []:
            if str(name).split("/", 1)[0] not in source_names:
                problems.add(_position(body, "on"), subject, f"`on: {name}` names an unknown source")
        try:
            rule = Rule.model_validate(data)
        except ValidationError as exc:
            _report(exc, body, subject, problems, skip=skip)
            continue
        _check_templates(rule, body, subject, problems)
        rules.append(rule)
    return rules


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _check_templates(rule: Rule, body: CommentedMap, subject: str, problems: _Problems) -> None:
    """Jinja syntax errors are load errors, reported where they are, not surprises at the first event."""
    try:
        if rule.if_:
            compile_expression(rule.if_)
    except TemplateError as exc:
        problems.add(_position(body, "if"), subject, str(exc))
    parts: list[tuple[str, Any]] = [("actions", [a.model_dump() for a in rule.actions])]
    if rule.contact is not None:
        parts.append(("contact", rule.contact.model_dump()))
    for key, dumped in parts:
        for text in _strings(dumped):
            try:
                compile_template(text)
            except TemplateError as exc:
                problems.add(_position(body, key), subject, str(exc))


def _normalise_actions(raw: Any, subject: str, problems: _Problems) -> list[dict[str, Any]]:
    """`- tag: NAME` becomes `{"kind": "tag", "name": NAME}` so one discriminated union validates it."""
    if not isinstance(raw, CommentedSeq):
        return []
    actions: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = _position(raw, index)
        if not isinstance(item, dict) or len(item) != 1:
            problems.add(where, subject, "each action is a mapping with one key, the action's name")
            continue
        kind, params = next(iter(item.items()))
        if kind not in ACTION_KINDS:
            problems.add(where, subject, f"unknown action `{kind}` (known: {', '.join(ACTION_KINDS)})")
            continue
        if not isinstance(params, dict):
            params = {SHORTHAND.get(kind, "value"): params}
        data = {"kind": kind, **dict(params)}
        try:
            _ACTION.validate_python(data)
        except ValidationError as exc:
            _report(exc, params if isinstance(params, CommentedMap) else item, subject, problems)
            continue
        actions.append(data)
    return actions
