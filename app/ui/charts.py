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


def paired_bars(
    pairs: list[tuple[int, int]],
    titles: list[str],
    *,
    label: str,
    classes: tuple[str, str],
    first: str,
    last: str,
    width: int = 720,
    height: int = 120,
) -> str:
    """Two bars per slot (each with its title), scaled to the highest; `first` under the first slot, `last` under
    the last one, where `{top}` is the highest count."""
    top = max([max(pair) for pair in pairs] + [1])
    step = width / max(len(pairs), 1)
    parts = [f'<svg viewBox="0 0 {width} {height + 14}" role="img" aria-label="{label}">']
    for i, (pair, title) in enumerate(zip(pairs, titles, strict=True)):
        x = i * step
        for offset, value, css in ((0.0, pair[0], classes[0]), (step / 2, pair[1], classes[1])):
            h = value / top * height
            parts.append(
                f'<rect class="{css}" x="{x + offset:.1f}" y="{height - h:.1f}" width="{step / 2:.1f}" '
                f'height="{h:.1f}"><title>{title}</title></rect>'
            )
    parts.append(f'<text x="0" y="{height + 12}">{first}</text>' if pairs else "")
    parts.append(f'<text x="{width}" y="{height + 12}" text-anchor="end">{last.format(top=top)}</text></svg>')
    return "".join(parts)


def svg(bars: list[Bar], *, width: int = 720, height: int = 120) -> str:
    return paired_bars(
        [(b.events, b.actions) for b in bars],
        [f"{b.hour}:00 UTC: {counted(b.events, 'event')}, {counted(b.actions, 'action')}" for b in bars],
        label="events and actions per hour",
        classes=("ev", "ac"),
        first=f"{bars[0].hour}:00" if bars else "",
        last="now (max {top}/h)",
        width=width,
        height=height,
    )
