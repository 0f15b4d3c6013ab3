"""`7d`, `12h`, `30m` or an ISO date, as a point in time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.store.models import utcnow

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str) -> datetime:
    """A point in time; ValueError (never OverflowError) for text that is not one, or lies before year 1."""
    try:
        match = _DURATION.match(value.strip())
        if match:
            return utcnow() - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo else parsed.astimezone()
        return parsed.astimezone(UTC)  # the stores compare in UTC: it must exist there
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"since {value!r}: use a duration like 7d, 12h, 30m or an ISO date after year 1") from exc
