"""Dashboard sessions on the server: opened at sign-in, looked up on each page, closed at sign-out."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import ui_sessions


async def open_session(engine: AsyncEngine, *, key: str, operator: str, now: datetime, expires: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(ui_sessions.insert().values(id=key, operator=operator, created_at=now, expires_at=expires))


async def session_operator(engine: AsyncEngine, key: str, *, now: datetime) -> str | None:
    """The operator of a session that is open and not expired, or None."""
    async with engine.connect() as conn:
        found = await conn.scalar(
            sa.select(ui_sessions.c.operator).where(ui_sessions.c.id == key, ui_sessions.c.expires_at > now)
        )
    return str(found) if found is not None else None


async def close_session(engine: AsyncEngine, key: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(ui_sessions.delete().where(ui_sessions.c.id == key))


async def purge_sessions(engine: AsyncEngine, *, now: datetime) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at <= now))
    return result.rowcount or 0
