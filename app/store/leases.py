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


async def take(engine: AsyncEngine, duty: str, holder: str, *, turn: timedelta, now: datetime) -> bool:
    """Take `duty` for `turn` if no turn of it is running; True when this holder got it."""
    async with engine.connect() as conn:
        ends = await conn.scalar(sa.select(leases.c.expires_at).where(leases.c.duty == duty))
    if ends is not None and ends > now:
        return False  # a read first: a turn still running costs no write transaction (SQLite has one writer)
    async with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(leases).values(duty=duty, holder=holder[:200], expires_at=now + turn)
        # Concurrent takers queue on the row: the second sees the first's turn and its condition fails.
        upsert = insert.on_conflict_do_update(
            index_elements=["duty"],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=leases.c.expires_at <= now,
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
    """End the holder's turn of `duty` now, or `after` from now (a pause before anyone takes the duty again)."""
    async with engine.begin() as conn:
        await conn.execute(
            leases.update()
            .where(leases.c.duty == duty, leases.c.holder == holder[:200], leases.c.expires_at > now)
            .values(expires_at=now + (after or timedelta(0)))
        )


async def holder(engine: AsyncEngine, duty: str) -> tuple[str, datetime] | None:
    """Who took the last turn of `duty`, and when it ends (for the operator and the tests)."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.duty == duty))).first()
    return (row.holder, row.expires_at) if row is not None else None
