"""Leases: a background duty that must have one holder at a time (retention and alerts, the unplanned-event sweep)
is done by whichever process takes its current turn, whatever the number of API replicas and workers.

A turn is a row `(duty, holder, expires_at)` taken with one conditional upsert: it goes to a process only when no
turn is running (no row yet, or the last one has ended), so of several asking at once exactly one gets it, on
SQLite as on PostgreSQL. A holder that dies simply lets its turn end; the next process to ask after `expires_at`
takes the duty over. In the database, not in Redis: a Redis flush must not hand a running turn to a second process.
A turn taken with `take` is not renewed early by its holder, so the duty moves to whichever process asks first once
it ends; that is what lets arq hand the upkeep cron to any worker. A duty that lasts as long as its work does (a
mirror sync, app/mirror/duty.py) has its holder `renew` the turn while it works and `release` it when done.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import leases


def new_holder() -> str:
    """This process's name as a holder: host (a container's id), pid, and a random part so that two pipelines in
    one process (the tests) are two holders."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# The holder of a pause (`release(..., after=...)`): nobody holds the duty, its next turn is just not due yet.
PAUSED = "paused:"


async def take(
    engine: AsyncEngine, duty: str, holder: str, *, turn: timedelta, now: datetime, over_pause: bool = False
) -> bool:
    """Take `duty` for `turn` if no turn of it is running (`over_pause`: nor only paused, an operator's own ask);
    True when this holder got it."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(leases.c.expires_at, leases.c.holder).where(leases.c.duty == duty))).first()
    paused = over_pause and row is not None and row.holder.startswith(PAUSED)
    if row is not None and row.expires_at > now and not paused:
        return False  # a read first: a turn still running costs no write transaction (SQLite has one writer)
    free = sa.or_(leases.c.expires_at <= now, leases.c.holder.startswith(PAUSED)) if over_pause else None
    async with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(leases).values(duty=duty, holder=holder[:200], expires_at=now + turn)
        # Concurrent takers queue on the row: the second sees the first's turn and its condition fails.
        upsert = insert.on_conflict_do_update(
            index_elements=["duty"],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=free if free is not None else leases.c.expires_at <= now,
        ).returning(leases.c.duty)
        return (await conn.execute(upsert)).first() is not None


async def renew(engine: AsyncEngine, duty: str, holder: str, *, turn: timedelta, now: datetime) -> bool:
    """Extend the running turn of `duty` to `now + turn`; only its holder can, and only before the turn ended (once
    it ended another may have taken it: the late holder has lost it). True when the turn was extended."""
    async with engine.begin() as conn:
        extended = await conn.execute(
            leases.update()
            .where(leases.c.duty == duty, leases.c.holder == holder[:200], leases.c.expires_at > now)
            .values(expires_at=now + turn)
        )
    return bool(extended.rowcount)


async def release(
    engine: AsyncEngine, duty: str, holder: str, *, now: datetime, after: timedelta | None = None
) -> None:
    """End the holder's turn of `duty` now, or pause the duty until `after` from now (before the processes take it
    again; an operator's own ask may, `take(..., over_pause=True)`)."""
    values: dict[str, object] = {"expires_at": now + (after or timedelta(0))}
    if after:
        values["holder"] = f"{PAUSED}{holder}"[:200]
    async with engine.begin() as conn:
        await conn.execute(
            leases.update()
            .where(leases.c.duty == duty, leases.c.holder == holder[:200], leases.c.expires_at > now)
            .values(**values)
        )


async def holder(engine: AsyncEngine, duty: str) -> tuple[str, datetime] | None:
    """Who took the last turn of `duty`, and when it ends (for the operator and the tests)."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.duty == duty))).first()
    return (row.holder, row.expires_at) if row is not None else None
