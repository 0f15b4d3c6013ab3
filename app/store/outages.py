"""What the store raises when the database cannot be reached: an outage to answer 503, never a 500.

SQLAlchemy wraps errors raised while a statement runs, but not always those raised while a connection is being
opened: asyncpg's own `CannotConnectNowError` ("the database system is shutting down", during a PostgreSQL
restart) and `TooManyConnectionsError` reach the caller unwrapped, and a refused connection is a plain OSError.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

# A write that failed with one of these stored nothing (its transaction never committed): the sender may retry.
STORAGE_OUTAGES: tuple[type[Exception], ...] = (
    DBAPIError,
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
