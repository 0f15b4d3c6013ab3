"""What any store takes and any page shows: payloads and times made safe once, at ingest.

PostgreSQL's JSONB and text refuse NUL characters and lone surrogates, and JSON has no NaN or Infinity (Python
reads them, and `1e400` as infinity; every database or response then refuses them). An event time that cannot be
expressed in UTC, or lies before 1970, would break the actions' order key. None of that may turn a delivery into
a `503 retry` forever, nor a stored event into pages that fail.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from app.errors import BadRequest

# Real webhooks nest a handful of levels; a few hundred is an attack, and deep values are costly to render.
MAX_DEPTH = 64
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def storable_text(value: str) -> str:
    """NUL and lone surrogates as the `\\uXXXX` text JSON would show; everything else unchanged."""
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def _number(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _item(value: Any, depth: int) -> Any:
    # Scalars first and by exact type: this walks every value of every delivery, up to MAX_BODY_BYTES of them.
    kind = type(value)
    if kind is str:
        return storable_text(value)
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return _number(value)
    return storable(value, depth)


def storable(value: Any, depth: int = 0) -> Any:
    """A copy of a parsed JSON value that every store takes; `BadRequest` when nested over MAX_DEPTH."""
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            raise BadRequest(f"the payload is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            return {storable_text(str(k)): _item(v, depth + 1) for k, v in value.items()}
        return [_item(v, depth + 1) for v in value]
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float):
        return _number(value)
    return value


def storable_time(value: datetime | None) -> datetime | None:
    """The time in UTC, or None (the event is then ordered by its arrival) when it is absurd."""
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        return None
    return utc if _EARLIEST <= utc < _LATEST else None
