"""Every payment and whether its buyer got access: read from the stored events, their rules and their actions.

Nothing is stored for this: a payment is an event its source's type recognises (app/payments/recognize.py), and
its status follows from the event's actions, so a retry or a replay that serves a buyer shows at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.payments.configured import payment_in, recognizes
from app.payments.recognize import Payment
from app.rules.schema import SourceConfig
from app.store.models import actions, events, payments_handled, rule_outcomes
from app.store.statuses import PaymentStatus

Status = PaymentStatus
STATUSES: tuple[Status, ...] = tuple(PaymentStatus)
# What an operator may mark handled: a payment that is not served, not refunded, and not handled already.
HANDLEABLE = frozenset({PaymentStatus.UNSERVED, PaymentStatus.PENDING})
# What "access" means for a payment: the enrolments and memberships its rules grant; else its tags; else any step.
ACCESS_KINDS = (("enroll", "add_to_community"), ("tag",))
UNSERVED_STATUSES = frozenset({"failed", "dead", "rejected", "skipped"})
# Rows read at most per listing: a seller's month of sales, many times over.
MAX_EVENTS = 20_000
# How much earlier than a payment a refund of it may be received, the provider's clock being ahead of ours.
REFUND_CLOCK_SKEW = timedelta(days=1)


@dataclass(frozen=True)
class Handled:
    """An operator's word that an unserved payment needs nothing more (access given by hand, a refund)."""

    by: str
    at: datetime
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at.isoformat(), "reason": self.reason}


@dataclass(frozen=True)
class Listed:
    event_id: str
    received_at: datetime
    source: str
    payment: Payment
    status: Status
    reason: str | None
    access_seconds: float | None
    # The account mode the event arrived under (app/accounts/modes.py): a dry run's or the simulator's test purchase.
    mode: str | None = None
    # Set when the status is `handled`; `reason` keeps why it was unserved.
    handled: Handled | None = None
    # The access steps that failed or were refused, skipped or rejected: what a Retry button retries.
    refused: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        p = self.payment
        return {
            "event_id": self.event_id,
            "received_at": self.received_at.isoformat(),
            "source": self.source,
            "kind": p.kind,
            "email": p.email,
            "product": p.product,
            "amount": p.amount,
            "amount_raw": p.amount_raw,
            "unit": p.unit,
            "currency": p.currency,
            "order": p.order,
            "status": self.status,
            "reason": self.reason,
            "access_seconds": self.access_seconds,
            "mode": self.mode,
            "handled": self.handled.as_dict() if self.handled else None,
        }


def _access(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A replay plans a rule's steps again: the latest row of each (rule, step) is the one that counts.
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["created_at"]):
        latest[(row["rule_id"], row["seq"])] = row
    current = [r for r in latest.values() if r["status"] != "cancelled"]
    for kinds in ACCESS_KINDS:
        chosen = [r for r in current if r["kind"] in kinds]
        if chosen:
            return chosen
    return current


def judge(
    received_at: datetime,
    planned: bool,
    matched: bool,
    rows: list[dict[str, Any]],
    *,
    now: datetime,
    deadline: timedelta,
) -> tuple[Status, str | None, float | None]:
    """The status of one payment (not refunded) from its event's actions."""
    if not planned:
        return PaymentStatus.PENDING, "not judged by the rules yet", None
    access = _access(rows)
    if not matched or not access:
        return PaymentStatus.UNSERVED, "no rule matched this payment", None
    if all(r["status"] == "succeeded" for r in access):
        served_at = max(r["updated_at"] for r in access)
        return PaymentStatus.SERVED, None, max(0.0, (served_at - received_at).total_seconds())
    refused = [r for r in access if r["status"] in UNSERVED_STATUSES]
    if refused:
        first = refused[0]
        # A skipped step says why in its outcome (a dry run, a tag condition); a failed one in its error.
        why = first["last_error"] or first.get("outcome") or first["note"] or first["status"]
        return PaymentStatus.UNSERVED, f"{first['kind']} {first['status']}: {why}", None
    if now - received_at > deadline:
        waiting = sorted({r["status"] for r in access if r["status"] != "succeeded"})
        minutes = deadline.total_seconds() / 60
        return PaymentStatus.UNSERVED, f"access not given within {minutes:g} minutes ({', '.join(waiting)})", None
    return PaymentStatus.PENDING, None, None


def _same_amount(payment: Payment, refund: Payment) -> bool:
    if refund.amount is None or refund.amount != payment.amount:
        return False
    return refund.currency is None or (refund.currency or "").upper() == (payment.currency or "").upper()


def refunded_payments(
    payments: Sequence[tuple[datetime, Payment]], refunds: Iterable[tuple[datetime, Payment]]
) -> set[int]:
    """The positions (in `payments`) of the payments refunded: each refund is consumed by at most one payment.

    By order id when both have one; else by buyer (and product when the refund names one): the latest payment of
    that buyer at or before the refund in event time not already consumed, preferring an equal amount and currency.
    Event time, not arrival, so a refund received before its payment still refunds it. A Stripe `charge.refunded`
    names no product: matching it against every earlier payment of the buyer refunded them all."""
    paid = [(at, p) for at, p in payments if p.kind == "payment"]
    positions = [i for i, (_, p) in enumerate(payments) if p.kind == "payment"]
    # Indexed by order and by buyer: a busy shop's month is tens of thousands of payments, and scanning them all
    # for every refund made the dashboard's home page take seconds.
    by_order: dict[str, list[int]] = {}
    by_buyer: dict[str, list[int]] = {}
    for i, (_, p) in enumerate(paid):
        if p.order:
            by_order.setdefault(p.order, []).append(i)
        if p.email:
            by_buyer.setdefault(p.email, []).append(i)
    consumed: set[int] = set()
    # Refunds linked by order first, so one matched by buyer never takes the payment an order names.
    for at, refund in sorted(refunds, key=lambda r: (r[1].order not in by_order, r[0])):
        if refund.kind != "refund":
            continue
        if refund.order in by_order:
            candidates = [i for i in by_order[refund.order] if paid[i][0] <= at]
        elif refund.email:
            # A payment with an order id matches a refund with one only by that id.
            candidates = [
                i
                for i in by_buyer.get(refund.email, [])
                if paid[i][0] <= at
                and refund.product in (None, paid[i][1].product)
                and not (refund.order and paid[i][1].order)
            ]
        else:
            candidates = []
        free = [i for i in candidates if i not in consumed]
        if not free:
            continue
        chosen = max(free, key=lambda i: (_same_amount(paid[i][1], refund), paid[i][0]))
        consumed.add(chosen)
    return {positions[i] for i in consumed}


def _paying(sources: Mapping[str, SourceConfig], source: str | None) -> dict[str, SourceConfig]:
    """The sources whose events can be payments (by their type, or by a `payment:`), or only `source` among them."""
    return {k: v for k, v in sources.items() if recognizes(v) and (source is None or k == source)}


def _columns() -> sa.Select[Any]:
    return sa.select(
        events.c.id,
        events.c.source,
        events.c.type,
        events.c.payload,
        events.c.received_at,
        events.c.occurred_at,
        events.c.planned_at,
        events.c.mode,
    )


def _query(kinds: Mapping[str, SourceConfig], since: datetime | None) -> sa.Select[Any]:
    query = _columns().where(events.c.source.in_(list(kinds)), events.c.purged_at.is_(None))
    if since is not None:
        query = query.where(events.c.received_at >= since)
    return query.order_by(events.c.received_at.desc()).limit(MAX_EVENTS)


async def list_refunds(
    engine: AsyncEngine, sources: Mapping[str, SourceConfig], *, since: datetime | None = None
) -> list[tuple[datetime, Payment]]:
    """The refunds received since `since`, newest first, with their time (sales at a glance counts them per day)."""
    paying = _paying(sources, None)
    if not paying:
        return []
    async with engine.connect() as conn:
        rows = list(await conn.execute(_query(paying, since)))
    found = ((row.received_at, payment_in(paying[row.source], row.type, row.payload or {})) for row in rows)
    return [(at, paid) for at, paid in found if paid is not None and paid.kind == "refund"]


def _refunded_ids(bought: list[tuple[Any, Payment]], refunds: list[tuple[datetime, Payment]]) -> set[str]:
    matched = refunded_payments([(_event_time(row), paid) for row, paid in bought], refunds)
    return {bought[i][0].id for i in matched}


def _event_time(row: Any) -> datetime:
    # In event order, as runs apply them: a refund delivered before its purchase still refunds it.
    return row.occurred_at or row.received_at  # type: ignore[no-any-return]


async def list_payments(
    engine: AsyncEngine,
    sources: Mapping[str, SourceConfig],
    *,
    now: datetime,
    deadline: timedelta,
    since: datetime | None = None,
    status: str | None = None,
    source: str | None = None,
    product: str | None = None,
) -> list[Listed]:
    """Payments received since `since`, newest first, each with its status; refunds link back to them."""
    paying = _paying(sources, source)
    if not paying:
        return []
    query = _query(paying, since)
    async with engine.connect() as conn:
        found = []
        for row in await conn.execute(query):
            paid = payment_in(paying[row.source], row.type, row.payload or {})
            if paid is not None:
                found.append((row, paid))
        bought = [(row, paid) for row, paid in found if paid.kind == "payment"]
        refunds = [(_event_time(row), paid) for row, paid in found if paid.kind == "refund"]
        refunded = _refunded_ids(bought, refunds)
        listed = await _judged(conn, bought, refunded, now=now, deadline=deadline)
    return [
        item
        for item in listed
        if (status is None or item.status == status) and (product is None or item.payment.product == product)
    ]


async def judge_payments(
    engine: AsyncEngine,
    sources: Mapping[str, SourceConfig],
    event_ids: Iterable[str],
    *,
    now: datetime,
    deadline: timedelta,
) -> dict[str, Listed]:
    """These payments, by event id, judged as the listing judges them however old they are: each with every refund
    whose event time is not before its own, wherever the refund falls in the order of arrival."""
    paying = _paying(sources, None)
    ids = list(event_ids)
    if not paying or not ids:
        return {}
    query = _columns().where(events.c.id.in_(ids), events.c.source.in_(list(paying)), events.c.purged_at.is_(None))
    async with engine.connect() as conn:
        found = []
        for row in await conn.execute(query):
            paid = payment_in(paying[row.source], row.type, row.payload or {})
            if paid is not None and paid.kind == "payment":
                found.append((row, paid))
        if not found:
            return {}
        # A refund is received after it happened, give or take the provider's clock: those received since a day
        # before the earliest payment's event time are every refund that can count for it.
        bound = min(_event_time(row) for row, _ in found) - REFUND_CLOCK_SKEW
        candidates = _columns().where(
            events.c.source.in_(list(paying)), events.c.purged_at.is_(None), events.c.received_at >= bound
        )
        refunds = []
        # The other payments of that time compete for the same refunds: each refund refunds one payment only.
        others = {row.id: (row, paid) for row, paid in found}
        async for row in await conn.stream(candidates):
            paid = payment_in(paying[row.source], row.type, row.payload or {})
            if paid is not None and paid.kind == "refund":
                refunds.append((_event_time(row), paid))
            elif paid is not None and row.id not in others:
                others[row.id] = (row, paid)
        refunded = _refunded_ids(list(others.values()), refunds)
        listed = await _judged(conn, found, refunded, now=now, deadline=deadline)
    return {item.event_id: item for item in listed}


async def _judged(
    conn: AsyncConnection,
    found: list[tuple[Any, Payment]],
    refunded: set[str],
    *,
    now: datetime,
    deadline: timedelta,
) -> list[Listed]:
    """The status of each payment (in its order) from its actions, rule outcomes, handled mark and the refunds."""
    ids = [row.id for row, _ in found]
    rows: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    matched: set[str] = set()
    handled: dict[str, Handled] = {}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        cols = (actions.c.id, actions.c.event_id, actions.c.rule_id, actions.c.seq, actions.c.kind)
        more = (actions.c.status, actions.c.last_error, actions.c.note, actions.c.outcome)
        times = (actions.c.created_at, actions.c.updated_at)
        for action in await conn.execute(sa.select(*cols, *more, *times).where(actions.c.event_id.in_(chunk))):
            rows[action.event_id].append(dict(action._mapping))
        judged = sa.select(rule_outcomes.c.event_id).where(
            rule_outcomes.c.event_id.in_(chunk), rule_outcomes.c.decision == "matched"
        )
        matched.update(r.event_id for r in await conn.execute(judged))
        marked = sa.select(payments_handled).where(payments_handled.c.event_id.in_(chunk))
        for one in await conn.execute(marked):
            handled[one.event_id] = Handled(one.handled_by, one.handled_at, one.reason)
    listed = []
    for row, paid in found:
        if row.id in refunded:
            judged_as: tuple[Status, str | None, float | None] = (PaymentStatus.REFUNDED, None, None)
        else:
            planned = row.planned_at is not None
            judged_as = judge(row.received_at, planned, row.id in matched, rows[row.id], now=now, deadline=deadline)
        mark = handled.get(row.id)
        # A retry or replay that serves the buyer afterwards wins: handled only stands for what is still not served.
        if mark is not None and judged_as[0] in HANDLEABLE:
            judged_as = (PaymentStatus.HANDLED, judged_as[1], None)
        else:
            mark = None
        refused = tuple(r["id"] for r in _access(rows.get(row.id, [])) if r["status"] in UNSERVED_STATUSES)
        listed.append(
            Listed(row.id, row.received_at, row.source, paid, *judged_as, mode=row.mode, handled=mark, refused=refused)
        )
    return listed
