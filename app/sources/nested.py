"""PHP-style bracketed form keys (`customer[email]`, `items[0][name]`, `tags[]`) read as nested objects.

ThriveCart, Gumroad (`card[visual]`, `url_params[...]`) and anything written in PHP post forms this way. PHP
builds arrays from such keys and `json_encode` turns an array keyed 0..n-1 into a list, any other into an
object; the same rule applies here, so a form reads as the same structure its sender's JSON would have.

Bounded like PHP's own parser (`max_input_nesting_level`, `max_input_vars`): a key deeper than `MAX_DEPTH`
stays flat only, and a form with more than `MAX_VALUES` values is not nested at all. A hostile key such as
`a[][][]...` costs at most `MAX_DEPTH` brackets of work before it is given up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 32
MAX_VALUES = 1000


class _Conflict(Exception):
    """A key that would overwrite a value another key set (`a=1&a[b]=2`): that key stays flat."""


def _split(key: str) -> tuple[str, list[str | None]] | None:
    """`a[b][]` -> ("a", ["b", None]); None when the key is not a well-formed bracketed name."""
    start = key.find("[")
    if start <= 0 or not key.endswith("]"):
        return None
    base, at = key[:start], start
    segments: list[str | None] = []  # None stands for `[]`, append
    while at < len(key):
        if len(segments) == MAX_DEPTH or key[at] != "[":
            return None
        end = key.find("]", at)
        inner = key[at + 1 : end]
        if "[" in inner:
            return None
        segments.append(inner or None)
        at = end + 1
    return base, segments


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class _Tree:
    """The nested result, with each array's next append index kept aside so `a[]` x N costs O(N)."""

    def __init__(self) -> None:
        self.root: dict[str, Any] = {}
        self._next: dict[int, int] = {}

    def _key(self, node: dict[str, Any], segment: str | None) -> str:
        if segment is None:
            # PHP appends at one past the largest integer key used so far.
            segment = str(self._next.get(id(node), 0))
        if segment.isascii() and segment.isdigit() and len(segment) < 19:
            self._next[id(node)] = max(self._next.get(id(node), 0), int(segment) + 1)
        return segment

    def place(self, base: str, segments: list[str | None], value: Any) -> None:
        node = self.root.setdefault(base, {})
        if not isinstance(node, dict):
            raise _Conflict
        *path, leaf = segments
        for segment in path:
            child = node.setdefault(self._key(node, segment), {})
            if not isinstance(child, dict):
                raise _Conflict
            node = child
        name = self._key(node, leaf)
        if name in node:
            raise _Conflict
        node[name] = value


def _listify(value: Any) -> Any:
    """Arrays keyed exactly 0..n-1 become lists, as `json_encode` makes them."""
    if not isinstance(value, dict):
        return value
    items = {k: _listify(v) for k, v in value.items()}
    if items and all(k == str(i) for i, k in enumerate(items)):
        return list(items.values())
    return items


def nest_brackets(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields with every bracketed key also readable nested; plain keys win over nested ones."""
    out = dict(fields)
    if sum(len(_values(v)) for v in fields.values()) > MAX_VALUES:
        return out
    tree = _Tree()
    for key, value in fields.items():
        parts = _split(key) if "[" in key else None
        if parts is None:
            continue
        base, segments = parts
        if base in fields:
            continue
        # `tags[]` posted three times arrives as one list: each value is its own element.
        placed = _values(value) if segments[-1] is None else [value]
        for one in placed:
            try:
                tree.place(base, segments, one)
            except _Conflict:
                break
    for base, value in tree.root.items():
        out[base] = _listify(value)
    return out
