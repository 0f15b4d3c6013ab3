"""Jinja2 in its sandbox, tuned for webhook payloads.

Payload keys win over Python attributes (`event.items` is the payload's `items`, not `dict.items`), and every
missing value is recorded with its full path, so a condition that read one can be reported false with the reason.
"""

from __future__ import annotations

import contextvars
from collections import UserDict, UserList
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

_missing_paths: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("missing_paths", default=None)


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
    if isinstance(value, list):
        return ListNode(value, path)
    return value


class Missing(ChainableUndefined):
    """An absent value: renders as "", chains silently, and is recorded where it was first read."""

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None, **_: Any) -> None:
        super().__init__(hint, obj, name)
        paths = _missing_paths.get()
        if paths is not None and not isinstance(obj, Missing):
            base = getattr(obj, "path", None)
            paths.append(f"{base}.{name}" if base else str(name))


class _Environment(SandboxedEnvironment):
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


ENV = _Environment(undefined=Missing, finalize=_finalize, autoescape=False)


class TemplateError(ValueError):
    """A template or expression that does not compile; the message says where."""


def compile_expression(source: str) -> Callable[..., Any]:
    try:
        return ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid `if` expression: {exc.message}") from exc


def compile_template(source: str) -> Template | str:
    """A compiled template, or the string itself when it holds no Jinja markup."""
    if "{{" not in source and "{%" not in source:
        return source
    try:
        return ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template {source!r}: {exc.message}") from exc


def evaluate(expression: Callable[..., Any], context: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Evaluate and return (value, paths read that were missing)."""
    paths: list[str] = []
    token = _missing_paths.set(paths)
    try:
        return expression(**context), paths
    finally:
        _missing_paths.reset(token)


def render(template: Template | str, context: Mapping[str, Any]) -> str:
    if isinstance(template, str):
        return template
    return template.render(context).strip()
