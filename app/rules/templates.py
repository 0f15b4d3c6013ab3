"""Jinja2 in its sandbox, tuned for webhook payloads.

Payload keys win over Python attributes (`event.items` is the payload's `items`, not `dict.items`), and every
missing value is recorded with its full path, so a condition that read one can be reported false with the reason.
"""

from __future__ import annotations

import contextvars
import re
from collections import UserDict, UserList
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from app.rules.messages import expression_words, template_words

_missing_paths: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("missing_paths", default=None)
# Values a condition read, by path, so "why not" can say `event.status was "unpaid"`.
_reads: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("reads", default=None)


class Node(UserDict[str, Any]):
    """A payload mapping that knows its path; wraps without copying."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data  # type: ignore[assignment]  # shared, not copied: payloads can be large
        self.path = path


class ListNode(UserList[Any]):
    def __init__(self, data: list[Any], path: str) -> None:
        self.data = data
        self.path = path


def wrap(value: Any, path: str) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, Node):
        return Node(value, path)
    reads = _reads.get()
    if reads is not None:
        reads[path] = value
    if isinstance(value, list):
        return ListNode(value, path)
    return value


def _path_of(obj: Any) -> str:
    """Where a value came from: a node knows its path; a plain value (a null) is found among the reads."""
    path = getattr(obj, "path", None)
    if isinstance(path, str):
        return path
    reads = _reads.get() or {}
    return next((p for p, v in reversed(reads.items()) if v is obj), type(obj).__name__)


class Missing(ChainableUndefined):
    """An absent value: renders as "", chains silently (method calls too), and is recorded where it was first read."""

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None, **_: Any) -> None:
        super().__init__(hint, obj, name)
        paths = _missing_paths.get()
        if paths is not None and not isinstance(obj, Missing):
            paths.append(f"{_path_of(obj)}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Missing:  # type: ignore[override]  # Undefined always raises
        # `event.name.split(' ')[0]` on a missing or null name renders "", like the missing value itself.
        return self


# Arithmetic over payload values must not take the process's memory or time: `'x' * n`, `2 ** n`.
_MAX_LENGTH = 100_000
_MAX_BITS = 100_000


def _too_large(operator: str, left: Any, right: Any) -> bool:
    if operator == "**":
        return (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > 0
            and left.bit_length() * right > _MAX_BITS
        )
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple | UserList) and isinstance(times, int):
            return len(seq) * times > _MAX_LENGTH
    return False


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if _too_large(operator, left, right):
            raise OverflowError(f"the result of `{operator}` would be too large")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Node):
            if attribute in obj.data:
                return wrap(obj.data[attribute], f"{obj.path}.{attribute}")
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Node):
            if argument in obj.data:
                return wrap(obj.data[argument], f"{obj.path}.{argument}")
            return self.undefined(obj=obj, name=str(argument))
        if isinstance(obj, ListNode) and isinstance(argument, int):
            try:
                return wrap(obj.data[argument], f"{obj.path}[{argument}]")
            except IndexError:
                return self.undefined(obj=obj, name=f"[{argument}]")
        return super().getitem(obj, argument)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Node | ListNode):
        return value.data
    return value


def _first_word(value: Any) -> str:
    words = str(_finalize(value) if not isinstance(value, Missing) else "").split()
    return words[0] if words else ""


def _name_parts(value: Any) -> tuple[str, str]:
    """A full name as (first name, surname): "Ada King Lovelace" → ("Ada", "King Lovelace"); with a comma the
    surname comes first, as many forms and CRMs write it: "Lovelace, Ada" → ("Ada", "Lovelace")."""
    text = " ".join(str(_finalize(value) if not isinstance(value, Missing) else "").split())
    if "," in text:
        surname, _, first = text.partition(",")
        return first.strip(), surname.strip()
    first, _, rest = text.partition(" ")
    return first, rest


def _first_name_of(value: Any) -> str:
    return _name_parts(value)[0]


def _surname_of(value: Any) -> str:
    return _name_parts(value)[1]


def _cents_to_units(value: Any, decimals: int = 2) -> str:
    """19900 → "199.00": payment providers send amounts in cents."""
    if isinstance(value, Missing) or value is None or value == "":
        return ""
    try:
        return f"{int(value) / 100:.{decimals}f}"
    except (TypeError, ValueError):
        return ""


def _default(value: Any, fallback: Any = "") -> Any:
    """Like Jinja's `default`, but null and empty strings count as missing too, as they do in payloads."""
    return fallback if isinstance(value, Missing) or value is None or value == "" else value


ENV = _Environment(undefined=Missing, finalize=_finalize, autoescape=False)
ENV.filters.update(
    first_word=_first_word,
    first_name_of=_first_name_of,
    surname_of=_surname_of,
    cents_to_units=_cents_to_units,
    default=_default,
    d=_default,
)


class TemplateError(ValueError):
    """A template or expression that does not compile; the message says where."""


# Compiled once per distinct source: the loader checks every template and the engine compiles them again,
# and many rules share the same templates.
@lru_cache(maxsize=16384)
def compile_expression(source: str, what: str = "`if`") -> Callable[..., Any]:
    """A compiled expression; `what` names it in the error (`if`, or a key of a source's `payment:`)."""
    try:
        return ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid {what} expression: {expression_words(source, str(exc.message))}") from exc


@lru_cache(maxsize=16384)
def compile_template(source: str) -> Template | str:
    """A compiled template, or the string itself when it holds no Jinja markup."""
    if "{{" not in source and "{%" not in source:
        return source
    try:
        return ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template {source!r}: {template_words(str(exc.message))}") from exc


# `{{ event.a.b }}` alone: most contact templates. Read straight from the payload, the way Jinja would render it,
# without a Jinja context per render (the larger part of planning's cost).
_PLAIN_PATH = re.compile(r"\s*\{\{\s*event((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*\}\}\s*")


@dataclass(frozen=True)
class PathTemplate:
    """A template that only prints one payload path; `template` renders it when the path leaves the mappings."""

    keys: tuple[str, ...]
    template: Template


def compile_fast(source: str) -> Template | PathTemplate | str:
    """Like `compile_template`, with plain payload paths read directly when rendered."""
    compiled = compile_template(source)
    plain = _PLAIN_PATH.fullmatch(source)
    if plain is None or isinstance(compiled, str):
        return compiled
    return PathTemplate(tuple(plain.group(1)[1:].split(".")), compiled)


@dataclass(frozen=True)
class Evaluation:
    value: Any
    missing: list[str]  # paths read that were not in the payload
    reads: dict[str, Any]  # path -> value of every leaf the expression read
    # What the expression raised over this payload (None > 5, 1 / 0): the rule's own failure, not the caller's.
    error: Exception | None = None


# `event.a.b == "paid"` (or `!=`, against a string, an integer, a boolean or none): the most common `if`, judged
# straight from the payload with the same value, reads and missing path Jinja would give.
_COMPARISON = re.compile(
    r"\s*event((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*(==|!=)\s*"
    r"(\"[^\"\\]*\"|'[^'\\]*'|-?(?:0|[1-9][0-9]*)|true|false|True|False|none|None)\s*"
)
_CONSTANTS: dict[str, Any] = {"true": True, "True": True, "false": False, "False": False, "none": None, "None": None}


@dataclass(frozen=True)
class PathComparison:
    """A condition comparing one payload path with a constant; `expression` judges it when the path leaves the
    mappings."""

    keys: tuple[str, ...]
    negate: bool
    constant: Any
    expression: Callable[..., Any]


def compile_condition(source: str) -> Callable[..., Any] | PathComparison:
    """Like `compile_expression`, with a plain comparison of a payload path judged directly."""
    expression = compile_expression(source)
    match = _COMPARISON.fullmatch(source)
    if match is None:
        return expression
    path, operator, literal = match.groups()
    if literal in _CONSTANTS:
        constant = _CONSTANTS[literal]
    elif literal[0] in "\"'":
        constant = literal[1:-1]
    else:
        constant = int(literal)
    return PathComparison(tuple(path[1:].split(".")), operator == "!=", constant, expression)


def _compare(condition: PathComparison, context: Mapping[str, Any]) -> Evaluation | None:
    value = context.get("event")
    value = value.data if isinstance(value, Node) else value
    path = "event"
    for key in condition.keys:
        if not isinstance(value, Mapping):
            return None  # an attribute of another value (`text.upper`, a null): Jinja decides
        if key not in value:
            return Evaluation(condition.negate, [f"{path}.{key}"], {})
        value = value[key]
        path = f"{path}.{key}"
    # Mappings are not recorded as reads, leaves are (as `wrap` does); lists compare as lists, mappings never equal.
    reads = {} if isinstance(value, Mapping) else {path: value}
    equal = False if isinstance(value, Mapping) else value == condition.constant
    return Evaluation(equal != condition.negate, [], reads)


def evaluate(expression: Callable[..., Any] | PathComparison, context: Mapping[str, Any]) -> Evaluation:
    if isinstance(expression, PathComparison):
        judged = _compare(expression, context)
        if judged is not None:
            return judged
        expression = expression.expression
    missing: list[str] = []
    reads: dict[str, Any] = {}
    tokens = _missing_paths.set(missing), _reads.set(reads)
    try:
        return Evaluation(expression(**context), missing, reads)
    except Exception as exc:
        return Evaluation(None, missing, reads, exc)
    finally:
        _missing_paths.reset(tokens[0])
        _reads.reset(tokens[1])


def _read_path(template: PathTemplate, context: Mapping[str, Any]) -> str | None:
    value = context.get("event")
    value = value.data if isinstance(value, Node) else value
    for key in template.keys:
        if not isinstance(value, Mapping):
            return None  # Jinja looks up attributes of other values (`text.upper`): let it
        if key not in value:
            return ""  # missing renders empty
        value = value[key]
    # As `_finalize` and Jinja's str() print it: null empty, mappings and lists as Python shows them.
    return "" if value is None else str(value).strip()


def render(template: Template | PathTemplate | str, context: Mapping[str, Any]) -> str:
    if isinstance(template, str):
        return template
    if isinstance(template, PathTemplate):
        text = _read_path(template, context)
        if text is not None:
            return text
        template = template.template
    return template.render(context).strip()
