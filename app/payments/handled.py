"""An operator marks an unserved payment handled, with a reason: access given by hand in Systeme.io, a refund
made at the provider, a duplicate purchase. Stored, so it stops heading the dashboard and raising the alert; the
listing shows it as `handled`, with who, when and why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import Conflict, NotFound, Unprocessable
from app.payments.service import HANDLEABLE, Listed, judge_payments
from app.rules.schema import SourceConfig
from app.store.models import payments_handled

MAX_REASON = 2000


async def payment(
    engine: AsyncEngine, sources: Mapping[str, SourceConfig], event_id: str, *, now: datetime, deadline: timedelta
) -> Listed | None:
    """One payment as the listing judges it, however old (refunds received before it included)."""
    found = await judge_payments(engine, sources, [event_id], now=now, deadline=deadline)
    return found.get(event_id)


async def mark_handled(
    engine: AsyncEngine,
    sources: Mapping[str, SourceConfig],
    event_id: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    deadline: timedelta,
) -> dict[str, Any]:
    """Record that `by` dealt with an unserved (or pending) payment; returns the payment as now listed."""
    reason = reason.strip()
    if not reason:
        raise Unprocessable("say why this payment needs nothing more (a reason is required)")
    if len(reason) > MAX_REASON:
        raise Unprocessable(f"the reason is longer than {MAX_REASON} characters")
    item = await payment(engine, sources, event_id, now=now, deadline=deadline)
    if item is None:
        raise NotFound(f"no payment {event_id!r}")
    if item.status not in HANDLEABLE:
        raise Conflict(f"payment {event_id} is {item.status}: only an unserved or pending payment can be handled")
    async with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        row = {"event_id": event_id, "handled_by": by, "handled_at": now, "reason": reason}
        inserted = await conn.execute(
            dialect.insert(payments_handled).on_conflict_do_nothing(index_elements=["event_id"]), row
        )
    if inserted.rowcount == 0:  # another operator got there first: theirs stands
        raise Conflict(f"payment {event_id} was marked handled meanwhile")
    listed = await payment(engine, sources, event_id, now=now, deadline=deadline)
    assert listed is not None
    return listed.as_dict()
