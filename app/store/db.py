"""Engines for SQLite (embedded) and PostgreSQL, set up so that concurrent writers wait instead of failing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.errors import StorageUnavailable

SQLITE_BUSY_MS = 30_000
# The drivers this package installs: a plain `postgresql://` URL (the usual form) would ask for psycopg2.
_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def async_url(url: str) -> str:
    """`postgresql://`, `postgres://` and `sqlite://` URLs with the async driver named; others as given."""
    scheme, sep, rest = url.partition("://")
    return f"{_ASYNC_DRIVERS.get(scheme.lower(), scheme)}{sep}{rest}" if sep else url


def ensure_sqlite_folder(url: str) -> None:
    """Create SQLite's folder; refuse in one sentence when this user cannot write there.

    SQLite itself would only say "unable to open database file", deep in a traceback. In a container the usual
    cause is a bind mount owned by root over `/srv/var`, while the service runs as an unprivileged user.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    database = Path(parsed.database)
    folder = database.parent
    who = f"user {os.getuid()}" if hasattr(os, "getuid") else "this user"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageUnavailable(f"cannot create the database folder {folder.resolve()} ({exc.strerror})") from exc
    # WAL mode writes two files next to the database, so the folder itself must be writable, not only the file.
    for path in (folder, database):
        if path.exists() and not os.access(path, os.W_OK):
            raise StorageUnavailable(
                f"{path.resolve()} is not writable by {who}: give it to that user, mount a volume there, "
                "or set DATABASE_URL"
            )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin) instead of the driver's deferred BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        f"busy_timeout={SQLITE_BUSY_MS}",
        "synchronous=NORMAL",
        "foreign_keys=ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout rather than one of them
    # failing with "database is locked" when its read lock cannot be upgraded.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        ensure_sqlite_folder(url)
        # One connection per process: SQLite takes one writer at a time anyway, and queueing in the pool is far
        # cheaper than connections spinning in SQLite's busy handler. Other processes still wait on busy_timeout.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"timeout": 5} if backend == "postgresql" else {},
    )
