"""Where things are in a rules file: the strings under a node, the keys a model allows at a path, and pydantic's
errors turned into one problem line each, at the line and column of what they are about."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.rules.problems import Problems, locate, position, suggest
from app.rules.schema import ACTION_KINDS


def _model_in(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def allowed_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `path` inside `model`, for "did you mean" hints."""
    current: type[BaseModel] | None = model
    for part in path:
        field = current.model_fields.get("if_" if part == "if" else str(part)) if current else None
        current = _model_in(field.annotation) if field else None
    if current is None:
        return []
    return [f.alias or name for name, f in current.model_fields.items() if name != "kind"]


def strings_at(parent: Any, key: Any) -> Iterator[tuple[tuple[int, int], str]]:
    """Every string under `parent[key]`, with where it starts."""
    value = parent[key]
    if isinstance(value, str):
        yield position(parent, key), value
    elif isinstance(value, CommentedMap):
        for inner in value:
            yield from strings_at(value, inner)
    elif isinstance(value, CommentedSeq):
        for index in range(len(value)):
            yield from strings_at(value, index)


def report(
    problems: Problems,
    exc: ValidationError,
    node: Any,
    subject: str,
    model: type[BaseModel],
    *,
    skip: tuple[Any, ...] = (),
) -> None:
    """One problem per pydantic error, placed at the node it is about."""
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ACTION_KINDS)
        if loc in skip:
            continue
        field = ".".join(str(p) for p in loc if p != "if_")
        message = err["msg"].removeprefix("Value error, ")
        unknown = err["type"] == "extra_forbidden"
        if unknown:
            message = f"unknown key `{loc[-1]}`{suggest(str(loc[-1]), allowed_keys(model, loc[:-1]))}"
        elif field:
            message = f"`{field}`: {message}"
        problems.add(locate(node, loc, of_key=unknown), subject, message)
