"""The complete mirror's rows: each account's last sync (`mirror_syncs`), and the entries a sync writes at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.models import contacts, mirror_syncs


@dataclass(frozen=True)
class SyncRecord:
    account: str
    mode: str  # the account mode it was read under (app/accounts/modes.py): complete only in that mode
    synced_at: datetime
    full_at: datetime
    # Where the next incremental read starts: {"registered": ISO time, "enrollments": {course: id},
    # "memberships": {community: id}}.
    cursor: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    misses: int = 0


# The mode of a row that holds only the progress of a first full read: no sync has completed, so nothing is trusted
# (a mirror is complete once synced under the account's mode, and no mode is "").
NEVER = ""


def _record(row: Any) -> SyncRecord:
    return SyncRecord(
        row.account, row.mode, row.synced_at, row.full_at, dict(row.cursor), int(row.requests), int(row.misses)
    )


async def load_sync(engine: AsyncEngine, account: str) -> SyncRecord | None:
    """The account's last completed sync."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(mirror_syncs).where(mirror_syncs.c.account == account, mirror_syncs.c.mode != NEVER)
            )
        ).first()
    return _record(row) if row is not None else None


async def all_syncs(engine: AsyncEngine) -> dict[str, SyncRecord]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(mirror_syncs).where(mirror_syncs.c.mode != NEVER))
        return {row.account: _record(row) for row in rows}


async def load_progress(engine: AsyncEngine, account: str) -> dict[str, Any] | None:
    """Where the account's unfinished full read stopped (app/mirror/full.py), None when none is under way."""
    async with engine.connect() as conn:
        cursor = await conn.scalar(sa.select(mirror_syncs.c.cursor).where(mirror_syncs.c.account == account))
    progress = (cursor or {}).get("full")
    return dict(progress) if progress else None


async def save_progress(conn: AsyncConnection, account: str, progress: dict[str, Any], *, now: datetime) -> None:
    """Record a full read's progress beside the last sync, or in a row of its own (mode NEVER) before the first."""
    cursor = await conn.scalar(sa.select(mirror_syncs.c.cursor).where(mirror_syncs.c.account == account))
    if cursor is None:
        await conn.execute(
            mirror_syncs.insert().values(
                account=account, mode=NEVER, synced_at=now, full_at=now, cursor={"full": progress}, requests=0, misses=0
            )
        )
        return
    await conn.execute(
        mirror_syncs.update().where(mirror_syncs.c.account == account).values(cursor={**dict(cursor), "full": progress})
    )


async def save_sync(conn: AsyncConnection, record: SyncRecord, *, progress: dict[str, Any] | None = None) -> None:
    """Upsert the account's sync, with the `progress` of a full read still under way (an incremental read between
    its parts); misses are kept when the mode is the same, and start again at 0 otherwise."""
    previous = (
        await conn.execute(sa.select(mirror_syncs.c.mode).where(mirror_syncs.c.account == record.account))
    ).first()
    values = {
        "mode": record.mode,
        "synced_at": record.synced_at,
        "full_at": record.full_at,
        "cursor": {**record.cursor, **({"full": progress} if progress else {})},
        "requests": record.requests,
    }
    if previous is None:
        await conn.execute(mirror_syncs.insert().values(account=record.account, misses=0, **values))
        return
    if previous.mode != record.mode:
        values["misses"] = 0
    await conn.execute(mirror_syncs.update().where(mirror_syncs.c.account == record.account).values(**values))


async def count_miss(engine: AsyncEngine, account: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            mirror_syncs.update().where(mirror_syncs.c.account == account).values(misses=mirror_syncs.c.misses + 1)
        )


async def load_entries(engine: AsyncEngine, account: str) -> dict[str, tuple[int, dict[str, Any], datetime, int]]:
    """Every mirror entry of the account, by email: (contact id, facts, learned at, version)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                contacts.c.email, contacts.c.contact_id, contacts.c.facts, contacts.c.learned_at, contacts.c.version
            ).where(contacts.c.account == account)
        )
        return {row.email: (int(row.contact_id), dict(row.facts), row.learned_at, int(row.version)) for row in rows}


async def known_count(engine: AsyncEngine, account: str) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(sa.select(sa.func.count()).where(contacts.c.account == account))
    return int(found or 0)


async def write_entries(
    conn: AsyncConnection,
    account: str,
    entries: Iterable[tuple[str, int, dict[str, Any], datetime, int]],
    *,
    gone: Iterable[tuple[str, int]] = (),
) -> None:
    """Upsert (email, contact id, facts, learned at, version read) in one statement; delete the (email, version
    read) of `gone`. An entry whose version is no longer the one read (0: none was) is left alone: a run wrote it
    since, and what it wrote is newer than what was read before."""
    rows = [
        {"account": account, "email": email, "contact_id": cid, "facts": facts, "learned_at": learned, "version": v + 1}
        for email, cid, facts, learned, v in entries
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for start in range(0, len(rows), 500):
        insert = dialect.insert(contacts)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["account", "email"],
                set_={
                    "contact_id": insert.excluded.contact_id,
                    "facts": insert.excluded.facts,
                    "learned_at": insert.excluded.learned_at,
                    "version": insert.excluded.version,
                },
                where=contacts.c.version == insert.excluded.version - 1,
            ),
            rows[start : start + 500],
        )
    doomed = list(gone)
    for start in range(0, len(doomed), 500):
        await conn.execute(
            contacts.delete().where(
                contacts.c.account == account,
                sa.tuple_(contacts.c.email, contacts.c.version).in_(doomed[start : start + 500]),
            )
        )
