"""Problems found in a rules file, each with its position and the rule or source it belongs to."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ruamel.yaml.comments import CommentedMap, CommentedSeq

Severity = Literal["error", "warning", "notice"]


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    column: int
    subject: str  # "rule 'id'", "source 'name'" or "" for the file itself
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        # Line 0: not about the file (a setting's key, say), so no position that would send a reader there.
        where = f"{self.path}:{self.line}:{self.column}: " if self.line else ""
        subject = f"{self.subject}: " if self.subject else ""
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}{subject}{prefix}{self.message}"


class Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[Problem] = []

    def add(self, where: tuple[int, int], subject: str, message: str, severity: Severity = "error") -> None:
        self.items.append(Problem(self.path, where[0], where[1], subject, message, severity))

    def in_order(self) -> list[Problem]:
        """As they appear in the file, so a reader fixes them top to bottom."""
        return sorted(self.items, key=lambda p: (p.line, p.column))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "error"]

    def count(self) -> int:
        return len(self.errors)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean `x`?)' for a near miss, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def position(node: Any, key: Any, *, of_key: bool = False) -> tuple[int, int]:
    """Where the value under `key` starts (or the key itself, for complaints about the key), 1-based."""
    try:
        if isinstance(node, CommentedMap):
            line, col = node.lc.key(key) if of_key else node.lc.value(key)
        else:
            line, col = node.lc.item(key)
        return int(line) + 1, int(col) + 1
    except (KeyError, TypeError, IndexError, AttributeError):
        return own_position(node)


def own_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    return (lc.line + 1, lc.col + 1) if lc is not None and lc.line is not None else (1, 1)


def locate(node: Any, loc: tuple[int | str, ...], *, of_key: bool = False) -> tuple[int, int]:
    """The position of the deepest node along a pydantic error location."""
    where = own_position(node)
    for index, part in enumerate(loc):
        key = "if" if part == "if_" else part
        last = index == len(loc) - 1
        if isinstance(node, CommentedMap) and key in node:
            where, node = position(node, key, of_key=of_key and last), node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            where, node = position(node, key), node[key]
        else:
            break
    return where
