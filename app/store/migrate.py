"""Apply the Alembic migrations, one process at a time (a PostgreSQL advisory lock serialises replicas)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from app.store.db import create_engine

log = logging.getLogger(__name__)
# Any fixed number will do, as long as every replica uses the same one.
_LOCK_KEY = 0x5F10_0001


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def _upgrade(connection: Any) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_async(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
                await conn.commit()
            try:
                await conn.run_sync(_upgrade)
                await conn.commit()
            finally:
                if postgres:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                    await conn.commit()
    finally:
        await engine.dispose()
    log.info("database schema is up to date")


def upgrade(database_url: str) -> None:
    """Bring the schema to the newest revision. Call outside any running event loop."""
    asyncio.run(upgrade_async(database_url))
