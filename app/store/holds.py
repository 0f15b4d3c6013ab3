"""Account holds in the store: one row per held account, shared by every process (API, workers, CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import account_holds

# Probes of a held account: every 30 s at first, then less often, at most every 15 minutes.
FIRST_PROBE = timedelta(seconds=30)
LAST_PROBE = timedelta(minutes=15)


@dataclass(frozen=True)
class Hold:
    account: str
    reason: str
    since: datetime
    next_probe_at: datetime
    probes: int


def probe_interval(probes: int) -> timedelta:
    interval: timedelta = FIRST_PROBE * (2 ** min(max(0, probes), 10))
    return min(interval, LAST_PROBE)


async def hold(engine: AsyncEngine, account: str, reason: str, *, now: datetime) -> bool:
    """Put the account on hold; True when it was not held already (the caller alerts once)."""
    async with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        inserted = await conn.execute(
            dialect.insert(account_holds)
            .values(account=account, reason=reason[:2000], since=now, next_probe_at=now + FIRST_PROBE, probes=0)
            .on_conflict_do_nothing(index_elements=["account"])
        )
    return inserted.rowcount == 1


async def release(engine: AsyncEngine, account: str) -> Hold | None:
    """End the hold; the hold that ended, or None when the account was not held."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                account_holds.delete().where(account_holds.c.account == account).returning(*account_holds.c)
            )
        ).first()
    return Hold(**row._mapping) if row is not None else None


async def take_probe(engine: AsyncEngine, account: str, *, now: datetime) -> bool:
    """Claim the probe that is due, so that of several workers one sends it; schedules the next one."""
    async with engine.begin() as conn:
        probes = await conn.scalar(sa.select(account_holds.c.probes).where(account_holds.c.account == account))
        if probes is None:
            return False
        result = await conn.execute(
            account_holds.update()
            .where(account_holds.c.account == account, account_holds.c.next_probe_at <= now)
            .values(probes=probes + 1, next_probe_at=now + probe_interval(probes + 1))
        )
    return result.rowcount == 1


async def holds(engine: AsyncEngine) -> list[Hold]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(account_holds).order_by(account_holds.c.account))
        return [Hold(**r._mapping) for r in rows]


def held_accounts() -> sa.Select[tuple[str]]:
    """For queries that must leave held accounts' actions alone."""
    return sa.select(account_holds.c.account)
