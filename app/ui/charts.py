"""Events and actions per hour as a small inline SVG: no JavaScript, no CDN."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.models import actions, events
from app.text import counted


@dataclass(frozen=True)
class Bar:
    hour: str
    events: int
    actions: int


def _hour(column: sa.ColumnElement[datetime], dialect: str) -> sa.ColumnElement[str]:
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.date_trunc("hour", column), 'YYYY-MM-DD"T"HH24')
    return sa.func.strftime("%Y-%m-%dT%H", column)


async def hourly(engine: AsyncEngine, *, now: datetime, hours: int = 72) -> list[Bar]:
    since = now - timedelta(hours=hours)
    counts: dict[str, list[int]] = {}
    async with engine.connect() as conn:
        dialect = conn.dialect.name
        for index, (table, column) in enumerate(((events, events.c.received_at), (actions, actions.c.created_at))):
            hour = _hour(column, dialect)
            rows = await conn.execute(
                sa.select(hour, sa.func.count()).select_from(table).where(column >= since).group_by(hour)
            )
            for label, count in rows:
                counts.setdefault(str(label), [0, 0])[index] = int(count)
    start = since.replace(minute=0, second=0, microsecond=0)
    labels = [(start + timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in range(hours + 1)]
    return [Bar(label, *counts.get(label, [0, 0])) for label in labels]


def svg(bars: list[Bar], *, width: int = 720, height: int = 120) -> str:
    top = max([max(b.events, b.actions) for b in bars] + [1])
    step = width / max(len(bars), 1)
    parts = [f'<svg viewBox="0 0 {width} {height + 14}" role="img" aria-label="events and actions per hour">']
    for i, bar in enumerate(bars):
        x = i * step
        for offset, value, css in ((0.0, bar.events, "ev"), (step / 2, bar.actions, "ac")):
            h = value / top * height
            title = f"{bar.hour}:00 UTC: {counted(bar.events, 'event')}, {counted(bar.actions, 'action')}"
            parts.append(
                f'<rect class="{css}" x="{x + offset:.1f}" y="{height - h:.1f}" width="{step / 2:.1f}" '
                f'height="{h:.1f}"><title>{title}</title></rect>'
            )
    parts.append(f'<text x="0" y="{height + 12}">{bars[0].hour}:00</text>' if bars else "")
    parts.append(f'<text x="{width}" y="{height + 12}" text-anchor="end">now (max {top}/h)</text></svg>')
    return "".join(parts)
