"""Durations (`5s`, `2m`, `12h`, `7d`) and `--since` values (a duration ago, or an ISO date)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> float:
    """Seconds in `30s`, `2m`, `1.5h`, `7d` or `2w`; ValueError otherwise."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise ValueError(f"{value!r} is not a duration: use a number and a unit, like 30s, 10m, 12h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """`7d`, `90m`, `45s`: the largest of d, h, m, s that says it exactly (what `parse_duration` reads back)."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def parse_since(value: str) -> datetime:
    """A point in time; ValueError (never OverflowError) for text that is not one, or lies before year 1."""
    try:
        if _DURATION.match(value.strip().lower()):
            return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.astimezone()
        return parsed.astimezone(UTC)  # the stores compare in UTC: it must exist there
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"since {value!r}: use a duration like 7d, 12h, 30m or an ISO date after year 1") from exc
