"""`7d`, `12h`, `30m` or an ISO date, as a point in time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from app.store.models import utcnow

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str) -> datetime:
    match = _DURATION.match(value.strip())
    if match:
        return utcnow() - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r}: use a duration like 7d, 12h, 30m or an ISO date") from exc
    return parsed if parsed.tzinfo else parsed.astimezone()
