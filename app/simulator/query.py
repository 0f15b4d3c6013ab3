"""The simulator's query parameters as the spec documents them: cursor pagination, relation and date-time filters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from app.simulator.state import Account, Problem


def page(request: Request, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Cursor pagination as documented: limit 10..100, startingAfter an id, order asc|desc (default desc)."""
    query = request.query_params
    try:
        limit = int(query.get("limit", "10"))
        after = int(query["startingAfter"]) if "startingAfter" in query else None
    except ValueError as exc:
        raise Problem(400, "limit and startingAfter must be integers") from exc
    if not 10 <= limit <= 100:
        raise Problem(400, "limit must be between 10 and 100")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise Problem(400, "order must be asc or desc")
    if after is not None and after < 1:
        raise Problem(400, "startingAfter must be a positive id")
    ordered = sorted(items, key=lambda i: i["id"], reverse=order == "desc")
    acc: Account | None = getattr(request.state, "account", None)
    if after is not None and (acc is None or acc.pager != "ignore_cursor"):
        ordered = [i for i in ordered if (i["id"] < after if order == "desc" else i["id"] > after)]
    return {"items": ordered[:limit], "hasMore": len(ordered) > limit}


def int_filter(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    # API Platform accepts an IRI or a plain id for relation filters.
    return int(value.rstrip("/").rsplit("/", 1)[-1]) if value.rstrip("/").rsplit("/", 1)[-1].isdigit() else -1


def date_filter(request: Request, name: str) -> datetime | None:
    """A `date-time` filter as the spec types it: ISO 8601 (a zone, or UTC when none); anything else is a 400."""
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Problem(400, f"{name}: {value!r} is not a date-time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)
