"""Sales at a glance from listed payments: per day, revenue kept per product and currency, time to access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.payments.recognize import Payment
from app.payments.service import Listed
from app.store.statuses import PaymentStatus
from app.ui import sales
from app.ui.router import TEMPLATES

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)


def _paid(
    n: int, product: str, cents: str | None, status: PaymentStatus, seconds: float | None, *, days_ago: int = 0
) -> Listed:
    payment = Payment("payment", f"buyer{n}@yopmail.com", cents, "EUR" if n % 2 else "USD", product, "minor")
    return Listed(f"evt_{n}", NOW - timedelta(days=days_ago), "stripe", payment, status, None, seconds)


def test_per_day_revenue_kept_and_the_spread_of_waits():
    served = [_paid(i, "course", "1000", PaymentStatus.SERVED, float(i * 10), days_ago=i % 3) for i in range(1, 21)]
    others = [
        _paid(21, "course", "1000", PaymentStatus.REFUNDED, None),
        _paid(23, "ebook", None, PaymentStatus.UNSERVED, None),  # amount unknown: no revenue
        _paid(
            25, "ebook", "2900", PaymentStatus.UNSERVED, None, days_ago=40
        ),  # before the chart's days: counted in revenue only
    ]
    refund = Payment("refund", "buyer21@yopmail.com", "1000", "EUR", None, "minor")
    summary = sales.summarise(served + others, [(NOW - timedelta(days=1), refund)], now=NOW)

    assert len(summary.days) == sales.DAYS and summary.days[-1].day == "2026-03-31"
    by_day = {d.day: (d.payments, d.refunds) for d in summary.days}
    assert by_day["2026-03-31"] == (8, 0) and by_day["2026-03-30"] == (7, 1) and by_day["2026-03-29"] == (7, 0)
    revenue = {(r.product, r.currency): (str(r.amount), r.count) for r in summary.revenue}
    # Ten served buyers in each currency, 10.00 each; the refunded one and the one of unknown amount add nothing.
    assert revenue == {
        ("course", "EUR"): ("100.00", 10),
        ("course", "USD"): ("100.00", 10),
        ("ebook", "EUR"): (
            "29.00",
            1,
        ),
    }
    waits = summary.waits
    assert (waits.served, waits.p50, waits.p95) == (20, 100.0, 190.0)
    assert dict(waits.buckets) == {"under 10 s": 0, "10 s to 1 min": 5, "1 to 10 min": 15, "10 min to 1 h": 0,
                                   "over 1 h": 0}  # fmt: skip
    assert [p.event_id for p in waits.slowest] == ["evt_20", "evt_19", "evt_18", "evt_17", "evt_16"]
    assert sales.percentile([], 0.5) is None and sales.percentile([3.0], 0.95) == 3.0


def test_the_charts_carry_their_values_as_text_and_escape_product_names():
    listed = [_paid(1, "<b>Bold</b> & co", "1000", PaymentStatus.SERVED, 30.0)]
    summary = sales.summarise(listed, [], now=NOW)
    revenue = sales.revenue_svg(summary.revenue)
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; co" in revenue and "<b>" not in revenue
    assert "10.00 EUR · 1" in revenue
    days = sales.days_svg(summary.days)
    assert 'aria-label="payments and refunds per day: 1 payments, 0 refunds over 30 days"' in days
    assert "<title>2026-03-31: 1 payments, 0 refunds</title>" in days
    waits = sales.waits_svg(summary.waits)
    assert "median 30 s, 95th percentile 30 s" in waits and "<title>10 s to 1 min: 1 buyers</title>" in waits
    assert [sales.duration(s) for s in (None, 2.5, 42, 150, 7200, 3 * 86400)] == [
        "–",
        "2.5 s",
        "42 s",
        "2.5 min",
        "2.0 h",
        "3.0 d",
    ]


def test_the_home_head_shows_the_newest_buyers_and_counts_the_rest():
    unserved = [_paid(i, "course", "1000", PaymentStatus.UNSERVED, None) for i in range(sales.HEAD_LIMIT + 3)]
    html = TEMPLATES.env.get_template("_unserved.html").render(
        unserved=unserved, head_limit=sales.HEAD_LIMIT, days=sales.DAYS, now=NOW, duration=sales.duration, csrf="t"
    )
    assert html.count('<tr id="pay-') == sales.HEAD_LIMIT and "And 3 more, older" in html
    assert f"{sales.HEAD_LIMIT + 3} buyers · last 30 days" in html
