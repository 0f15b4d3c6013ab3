"""Sales at a glance: payments and refunds per day, revenue per product and currency, and how long buyers waited
for access, as small inline SVG charts (no JavaScript, no CDN) with their values also given as text."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from html import escape

from app.payments.recognize import Payment
from app.payments.service import Listed
from app.store.statuses import PaymentStatus
from app.ui.charts import paired_bars

DAYS = 30
# Time from payment to access, in buckets a seller thinks in.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 10 s", 10),
    ("10 s to 1 min", 60),
    ("1 to 10 min", 600),
    ("10 min to 1 h", 3600),
    ("over 1 h", math.inf),
)
SLOWEST = 5
# Unserved buyers shown at the head of the home page, newest first; the rest are counted (the CLI lists them all).
HEAD_LIMIT = 50


@dataclass(frozen=True)
class Day:
    day: str
    payments: int
    refunds: int


@dataclass(frozen=True)
class Revenue:
    product: str
    currency: str
    amount: Decimal
    count: int


@dataclass(frozen=True)
class Waits:
    served: int
    p50: float | None
    p95: float | None
    buckets: list[tuple[str, int]]
    slowest: list[Listed] = field(default_factory=list)


@dataclass(frozen=True)
class Sales:
    days: list[Day]
    revenue: list[Revenue]
    waits: Waits


def _amount(value: str | None) -> Decimal | None:
    try:
        amount = Decimal(value) if value else None
    except InvalidOperation:
        return None
    return amount if amount is not None and amount.is_finite() else None


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest rank: the smallest value with at least `share` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarise(
    payments: Sequence[Listed], refunds: Sequence[tuple[datetime, Payment]], *, now: datetime, days: int = DAYS
) -> Sales:
    start = (now - timedelta(days=days - 1)).date()
    labels = [(start + timedelta(days=d)).isoformat() for d in range(days)]
    paid = Counter(p.received_at.date().isoformat() for p in payments)
    refunded = Counter(at.date().isoformat() for at, _ in refunds)
    per_day = [Day(label, paid[label], refunded[label]) for label in labels]
    totals: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for p in payments:
        amount = _amount(p.payment.amount)
        # Revenue is what was kept: a refunded payment, or one of unknown amount, adds nothing.
        if p.status == PaymentStatus.REFUNDED or amount is None:
            continue
        key = (p.payment.product or "unknown product", p.payment.currency or "")
        total, count = totals.get(key, (Decimal(0), 0))
        totals[key] = (total + amount, count + 1)
    revenue = sorted(
        (Revenue(product, currency, total, count) for (product, currency), (total, count) in totals.items()),
        key=lambda r: (r.currency, -r.amount, r.product),
    )
    served = [p for p in payments if p.status == PaymentStatus.SERVED and p.access_seconds is not None]
    seconds = [p.access_seconds for p in served if p.access_seconds is not None]
    buckets = [(label, 0) for label, _ in BUCKETS]
    for value in seconds:
        index = next(i for i, (_, top) in enumerate(BUCKETS) if value < top)
        buckets[index] = (buckets[index][0], buckets[index][1] + 1)
    slowest = sorted(served, key=lambda p: -(p.access_seconds or 0))[:SLOWEST]
    waits = Waits(len(seconds), percentile(seconds, 0.5), percentile(seconds, 0.95), buckets, slowest)
    return Sales(per_day, revenue, waits)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def days_svg(days: list[Day], *, width: int = 720, height: int = 120) -> str:
    total_paid, total_refunded = sum(d.payments for d in days), sum(d.refunds for d in days)
    return paired_bars(
        [(d.payments, d.refunds) for d in days],
        [f"{d.day}: {d.payments} payments, {d.refunds} refunds" for d in days],
        label=f"payments and refunds per day: {total_paid} payments, {total_refunded} refunds over {len(days)} days",
        classes=("ev", "rf"),
        first=days[0].day if days else "",
        last="today (max {top}/day)",
        width=width,
        height=height,
    )


def revenue_svg(revenue: list[Revenue], *, width: int = 720) -> str:
    """One bar per product and currency, scaled within its currency (amounts of two currencies do not compare)."""
    row = 22
    height = max(len(revenue), 1) * row
    tops: dict[str, Decimal] = {}
    for r in revenue:
        tops[r.currency] = max(tops.get(r.currency, Decimal(0)), r.amount)
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="revenue per product and currency">']
    label_width, bar_space = 230, width - 230 - 150
    for i, r in enumerate(revenue):
        y = i * row
        top = tops[r.currency] or Decimal(1)
        w = float(r.amount / top) * bar_space if top > 0 else 0.0
        text = f"{r.amount:,.2f} {r.currency}".strip()
        name = escape(r.product if len(r.product) <= 32 else r.product[:31] + "…")
        parts.append(
            f'<text x="0" y="{y + 15}">{name}</text>'
            f'<rect class="ev" x="{label_width}" y="{y + 4}" width="{max(w, 1.0):.1f}" height="{row - 8}">'
            f"<title>{escape(r.product)}: {escape(text)} from {r.count} payments</title></rect>"
            f'<text x="{label_width + max(w, 1.0) + 6:.1f}" y="{y + 15}">{escape(text)} · {r.count}</text>'
        )
    if not revenue:
        parts.append('<text x="0" y="15">no revenue in this period</text>')
    parts.append("</svg>")
    return "".join(parts)


def waits_svg(waits: Waits, *, width: int = 720, height: int = 110) -> str:
    top = max([count for _, count in waits.buckets] + [1])
    step = width / len(waits.buckets)
    label = f"time from payment to access: {waits.served} buyers served"
    if waits.p50 is not None:
        label += f", median {duration(waits.p50)}, 95th percentile {duration(waits.p95)}"
    parts = [f'<svg viewBox="0 0 {width} {height + 28}" role="img" aria-label="{label}">']
    for i, (name, count) in enumerate(waits.buckets):
        h = count / top * height
        x = i * step
        parts.append(
            f'<rect class="ac" x="{x + 8:.1f}" y="{height - h + 14:.1f}" width="{step - 16:.1f}" height="{h:.1f}">'
            f"<title>{name}: {count} buyers</title></rect>"
            f'<text x="{x + step / 2:.1f}" y="{height - h + 10:.1f}" text-anchor="middle">{count}</text>'
            f'<text x="{x + step / 2:.1f}" y="{height + 26}" text-anchor="middle">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
