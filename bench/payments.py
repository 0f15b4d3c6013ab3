"""Matching refunds to payments for a busy shop's month, as the dashboard's home page, Sales and the unserved alert
do on every read.

    python -m bench.payments [--payments 20000] [--refunds 0.1]

Prints the time to match them (app/payments/service.py `refunded_payments`) against the time of one pass over the
same payments (reading each one's buyer, order and time: the least any matching does), in the same run. The target
is that matching grows with the payments, not with payments × refunds: a ratio that stays flat as --payments grows.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from app.payments.recognize import Payment
from app.payments.service import refunded_payments


def month(payments: int, refund_share: float) -> tuple[list[tuple[datetime, Payment]], list[tuple[datetime, Payment]]]:
    """A shop's payments two minutes apart, by buyers who sometimes come back; half with an order id (Stripe's
    payment intent), half without (a form's sale); a share refunded five minutes later."""
    rng = random.Random(1)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    paid, refunds = [], []
    for n in range(payments):
        at = start + timedelta(seconds=120 * n)
        email = f"buyer{rng.randrange(int(payments * 0.75) + 1)}@yopmail.com"
        order = f"pi_{n}" if n % 2 else None
        paid.append((at, Payment("payment", email, "19900", "EUR", "course", "minor", order)))
        if rng.random() < refund_share:
            refunds.append((at + timedelta(minutes=5), Payment("refund", email, "19900", "EUR", None, "minor", order)))
    return paid, refunds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--refunds", type=float, default=0.1, help="the share of payments refunded")
    args = parser.parse_args()
    for size in (args.payments // 10, args.payments):
        paid, refunds = month(size, args.refunds)
        clock = time.perf_counter()
        seen = {(p.email, p.order, at) for at, p in paid}
        baseline = time.perf_counter() - clock
        clock = time.perf_counter()
        matched = refunded_payments(paid, refunds)
        spent = time.perf_counter() - clock
        print(
            f"{size:>6} payments, {len(refunds):>5} refunds: matched {len(matched)} in {spent * 1000:.1f} ms; "
            f"one pass over the payments {baseline * 1000:.1f} ms ({len(seen)} read); ratio {spent / baseline:.1f}"
        )


if __name__ == "__main__":
    main()
