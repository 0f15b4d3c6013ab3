"""Pre-compiled inserts for ingest's group commit: the driver's executemany, without SQLAlchemy's per-row work.

Each (table, columns, dialect) is compiled once. Rows are bound by the columns' own bind processors (UTC times,
JSON text), so what is stored is exactly what `conn.execute(table.insert(), rows)` would store; what is skipped is
the execution machinery around them, most of the cost of a group's thousands of parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class _Insert:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


@lru_cache(maxsize=64)
def _compiled(table: sa.Table, columns: tuple[str, ...], dialect: Dialect, on_conflict: tuple[str, ...]) -> _Insert:
    if on_conflict:
        # Skip a row whose unique key is already stored (a redelivery), instead of failing the whole group.
        insert: Any = (postgresql if dialect.name == "postgresql" else sqlite).insert(table)
        insert = insert.on_conflict_do_nothing(index_elements=list(on_conflict))
    else:
        insert = table.insert()
    compiled = insert.compile(dialect=dialect, column_keys=list(columns))
    names = tuple(compiled.positiontup or ())
    # Every parameter must be one the caller gives: a column default filled in by SQLAlchemy would be missing.
    assert sorted(names) == sorted(columns), (table.name, names, columns)
    processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    return _Insert(compiled.string, names, processors)


def _bind(statement: _Insert, row: Mapping[str, Any]) -> Iterator[Any]:
    for name, process in zip(statement.names, statement.processors, strict=True):
        value = row[name]
        yield value if process is None else _processed(process, value)


@lru_cache(maxsize=256)
def _time(process: Callable[[Any], Any], value: datetime) -> Any:
    # The rows of one event share their times (received, created, updated, due): each is converted once.
    return process(value)


def _processed(process: Callable[[Any], Any], value: Any) -> Any:
    return _time(process, value) if type(value) is datetime else process(value)


async def insert_many(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    on_conflict: tuple[str, ...] = (),
) -> int:
    """Insert `rows` (each with the same keys) in one executemany; the number of rows inserted, or -1 if the driver
    does not say (asyncpg)."""
    if not rows:
        return 0
    statement = _compiled(table, tuple(rows[0]), conn.dialect, on_conflict)
    bound = [tuple(_bind(statement, row)) for row in rows]
    result = await conn.exec_driver_sql(statement.sql, bound)
    return result.rowcount


async def present_ids(conn: AsyncConnection, table: sa.Table, ids: list[str]) -> set[str]:
    """Which of `ids` are in `table`."""
    if conn.dialect.name == "postgresql":
        # One array parameter: a statement the driver prepares once, whatever the number of ids.
        found = await conn.exec_driver_sql(f"SELECT id FROM {table.name} WHERE id = ANY($1::varchar[])", (ids,))
    else:
        found = await conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids)))
    return set(found.scalars())
