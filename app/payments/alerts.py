"""The alert a seller most needs: a buyer paid and has no access. One message names every such buyer.

Alerts of a kind go out at most once an hour (app/alerts.py); a second buyer left unserved within that hour is
not lost behind the throttle: each buyer is marked once named, so the next message names every buyer not yet
named, grouped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import is_test
from app.config import Settings
from app.payments.service import Listed, list_payments
from app.pipeline import alerts
from app.rules.schema import SourceConfig
from app.store.models import alerts as alert_rows

KIND = "unserved_payment"
# Payments older than this are no longer alerted about (they stay listed by `systeme-flow payments`).
LOOKBACK = timedelta(days=7)
# Buyers named in full in one message; the rest are counted.
NAMED = 20


def _marker(event_id: str) -> str:
    return f"unserved:{event_id}"


def message(unserved: list[Listed]) -> str:
    def who(item: Listed) -> str:
        p = item.payment
        price = f"{p.amount} {p.currency}" if p.amount else "amount unknown"
        return f"{p.email or 'unknown buyer'} ({p.product or 'unknown product'}, {price}): {item.reason}"

    named = "; ".join(who(item) for item in unserved[:NAMED])
    more = f"; and {len(unserved) - NAMED} more" if len(unserved) > NAMED else ""
    count = "1 buyer paid and has" if len(unserved) == 1 else f"{len(unserved)} buyers paid and have"
    # Where to act: the dashboard's home page lists them with Retry, Replay and Handled.
    where = "systeme-flow payments --status unserved, or the dashboard's home page to retry, replay or mark handled"
    return f"{count} no access yet: {named}{more} ({where})"


async def unserved(
    engine: AsyncEngine, settings: Settings, sources: Mapping[str, SourceConfig], *, now: datetime
) -> list[Listed]:
    deadline = timedelta(minutes=settings.access_deadline_minutes)
    return await list_payments(engine, sources, now=now, deadline=deadline, since=now - LOOKBACK, status="unserved")


def counts_under(item: Listed, mode: str | None) -> bool:
    """Whether an unserved payment is an alarm under the account mode in force: a test purchase left from a dry run
    or the simulator under another mode is not (it is a leftover, app/operator/modes.py); None: every one is."""
    return mode is None or item.mode is None or item.mode == mode or not is_test(item.mode)


async def alert_unserved(
    engine: AsyncEngine,
    settings: Settings,
    sources: Mapping[str, SourceConfig],
    *,
    now: datetime,
    mode: str | None = None,
) -> int:
    """Send one message naming the unserved buyers not named before; returns how many it named.

    `mode` is the account mode in force: a test purchase left from a dry run or the simulator under another mode
    is no alarm (None: every payment counts).
    """
    found = [item for item in await unserved(engine, settings, sources, now=now) if counts_under(item, mode)]
    if not found or not settings.alert_webhook_url:
        return 0
    markers = {_marker(item.event_id): item for item in found}
    async with engine.connect() as conn:
        named = set(await conn.scalars(sa.select(alert_rows.c.kind).where(alert_rows.c.kind.in_(list(markers)))))
    fresh = [item for key, item in markers.items() if key not in named]
    if not fresh or not await alerts.send(engine, settings, kind=KIND, text=message(fresh), now=now):
        return 0
    async with engine.begin() as conn:
        # Another process may have named the same buyer meanwhile: one marker is enough.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        rows = [{"kind": _marker(item.event_id), "last_sent_at": now} for item in fresh]
        await conn.execute(dialect.insert(alert_rows).on_conflict_do_nothing(index_elements=["kind"]), rows)
    return len(fresh)
