"""The action state machine's transitions, each a conditional row update, taken a run at a time.

awaiting_approval ──approve──► pending ──claim──► running ──► succeeded | failed | skipped | dead
        └──reject / deadline──► rejected    ▲                  │
                                            └── transient ─────┘ (attempts < max: pending, next_attempt_at)
scheduled (a delayed step, due at next_attempt_at) ──claim once due──► running;  run now ──► pending
pending | scheduled ──cancel (operator, or a `cancel_scheduled` step)──► cancelled

A run is the actions of one event for one contact, executed in order by one worker: it claims the leading actions
that are due (a later step never overtakes an earlier one that waits), renews their lease while it lives, records
each step as it ends, and releases what it did not reach. A running row whose lease ran out (its worker died) can be
claimed again. A run waits while an earlier event's action for the same contact is pending or running, for at most
`ordering_wait`. A scheduled step that is not due holds back only the later steps of its own rule: neither the other
rules of its run nor the contact's later events wait days behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.accounts.modes import Modes
from app.store.contacts import ContactWrite, write_contact
from app.store.convergence import later_run_under_way, lock_contact
from app.store.holds import held_accounts
from app.store.models import account_holds, actions, api_calls
from app.store.modes import runnable
from app.store.statuses import ActionStatus, Priority

TERMINAL = frozenset(
    {
        ActionStatus.SUCCEEDED,
        ActionStatus.FAILED,
        ActionStatus.DEAD,
        ActionStatus.SKIPPED,
        ActionStatus.REJECTED,
        ActionStatus.CANCELLED,
    }
)
ACTIVE = (ActionStatus.PENDING, ActionStatus.RUNNING)
# A scheduled row runs like a pending one once due.
WAITING = (ActionStatus.PENDING, ActionStatus.SCHEDULED)
_TEXT_LIMIT = 4000


@dataclass(frozen=True)
class ClaimedAction:
    id: str
    event_id: str
    rule_id: str
    kind: str
    params: dict[str, Any]
    contact: dict[str, Any] | None
    attempt: int
    contact_email: str | None
    order_key: str
    account: str
    # It was a scheduled step: later events of the contact ran meanwhile by design, not out of order.
    delayed: bool = False
    priority: Priority = Priority.NORMAL


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    due = sa.or_(actions.c.next_attempt_at.is_(None), actions.c.next_attempt_at <= now)
    return sa.or_(
        sa.and_(actions.c.status.in_(WAITING), due),
        sa.and_(actions.c.status == ActionStatus.RUNNING, actions.c.lease_until < now),
    )


def _is_claimable(row: Any, now: datetime) -> bool:
    if row.status in WAITING:
        return row.next_attempt_at is None or row.next_attempt_at <= now
    return row.status == ActionStatus.RUNNING and row.lease_until is not None and row.lease_until < now


def _not_yet(row: Any, now: datetime) -> bool:
    """A scheduled step whose time has not come."""
    return row.status == ActionStatus.SCHEDULED and row.next_attempt_at is not None and row.next_attempt_at > now


def _in_the_way(now: datetime) -> sa.ColumnElement[bool]:
    # Pending or running, or scheduled and due: a scheduled step that is not due never holds the contact's other
    # events (a refund must run at once, to cancel it).
    return sa.or_(
        actions.c.status.in_(ACTIVE),
        sa.and_(actions.c.status == ActionStatus.SCHEDULED, actions.c.next_attempt_at <= now),
    )


def _same_contact(email: str | None) -> sa.ColumnElement[bool]:
    return actions.c.contact_email.is_(None) if email is None else actions.c.contact_email == email


async def _blocked(
    conn: AsyncConnection, first: Any, now: datetime, ordering_wait: timedelta, modes: Modes | None
) -> bool:
    """An earlier event's action for the same contact is still pending or running (and we have not waited long), or
    a later event's run of the contact is under way."""
    if first.contact_email is None:
        return False
    if await later_run_under_way(conn, first, now):
        return True
    if first.created_at < now - ordering_wait:
        return False
    earlier = await conn.scalar(
        sa.select(actions.c.id)
        .where(
            actions.c.contact_email == first.contact_email,
            actions.c.account == first.account,
            actions.c.order_key < first.order_key,
            actions.c.event_id != first.event_id,
            _in_the_way(now),
            # Work of another mode never runs here, so it holds nobody back.
            runnable(modes),
        )
        .limit(1)
    )
    return earlier is not None


async def head_of(engine: AsyncEngine, action_id: str) -> tuple[str, Priority, int] | None:
    """(account, priority, next attempt number) of an action, read before claiming its run."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(actions.c.account, actions.c.priority, actions.c.attempts).where(actions.c.id == action_id)
            )
        ).first()
    return (row.account, Priority.of_rank(row.priority), row.attempts + 1) if row is not None else None


async def claim_run(
    engine: AsyncEngine,
    action_id: str,
    *,
    token: str,
    now: datetime,
    lease: timedelta,
    ordering_wait: timedelta,
    max_attempts: int,
    modes: Modes | None = None,
) -> list[ClaimedAction]:
    """Take the run `action_id` belongs to: its leading due actions, in order. Empty when there is nothing to do
    now (another run holds them, the first is not due, or an earlier event of the contact goes first). With
    `modes` (account -> current mode), actions planned under another mode are never taken (app/accounts/modes.py)."""
    async with engine.begin() as conn:
        anchor = (
            await conn.execute(
                sa.select(actions.c.event_id, actions.c.contact_email, actions.c.account).where(
                    actions.c.id == action_id
                )
            )
        ).first()
        if anchor is None:
            return []
        if anchor.contact_email is not None:
            await lock_contact(conn, anchor.account, anchor.contact_email)
        if await conn.scalar(sa.select(account_holds.c.account).where(account_holds.c.account == anchor.account)):
            return []  # the account is on hold: its actions wait as they are
        query = (
            sa.select(actions)
            .where(
                actions.c.event_id == anchor.event_id,
                _same_contact(anchor.contact_email),
                actions.c.account == anchor.account,
                actions.c.status.in_((*ACTIVE, ActionStatus.SCHEDULED)),
                runnable(modes),
            )
            .order_by(actions.c.order_key)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        rows = list(await conn.execute(query))
        lead = []
        held: set[str] = set()
        for row in rows:
            # A step waiting for its time holds back the later steps of its own rule, and only those: the run's
            # other rules go on past it.
            if row.rule_id in held or _not_yet(row, now):
                held.add(row.rule_id)
                continue
            if not _is_claimable(row, now):
                break
            lead.append(row)
        if not lead or await _blocked(conn, lead[0], now, ordering_wait, modes):
            return []
        # A row whose every attempt ended with its worker gone (killed, out of memory) stops here, visibly.
        spent = [r.id for r in lead if r.status == ActionStatus.RUNNING and r.attempts >= max_attempts]
        if spent:
            await conn.execute(
                actions.update()
                .where(actions.c.id.in_(spent))
                .values(
                    status=ActionStatus.DEAD,
                    lease_until=None,
                    claimed_by=None,
                    last_error=f"gave up after {max_attempts} attempts: the worker running it stopped each time",
                    updated_at=now,
                )
            )
        ids = [r.id for r in lead if r.id not in spent]
        if not ids:
            return []
        delayed = {r.id for r in lead if r.status == ActionStatus.SCHEDULED}
        claimed = await conn.execute(
            actions.update()
            .where(actions.c.id.in_(ids), _claimable(now))
            .values(
                status=ActionStatus.RUNNING,
                attempts=actions.c.attempts + 1,
                lease_until=now + lease,
                claimed_by=token,
                updated_at=now,
            )
            .returning(actions)
        )
        taken = sorted(claimed, key=lambda r: r.order_key)
    return [
        ClaimedAction(
            id=r.id,
            event_id=r.event_id,
            rule_id=r.rule_id,
            kind=r.kind,
            params=dict(r.params),
            contact=dict(r.contact) if r.contact else None,
            attempt=r.attempts,
            contact_email=r.contact_email,
            order_key=r.order_key,
            account=r.account,
            delayed=r.id in delayed,
            priority=Priority.of_rank(r.priority),
        )
        for r in taken
    ]


async def renew(engine: AsyncEngine, token: str, *, until: datetime) -> int:
    """The run's heartbeat: extend the lease of the rows it still holds."""
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(actions.c.claimed_by == token, actions.c.status == ActionStatus.RUNNING)
            .values(lease_until=until)
        )
    return result.rowcount


def _call_row(call: dict[str, Any], action: ClaimedAction) -> dict[str, Any]:
    # Bounded to the columns: a hostile value (a 64 KB tag name in a path) must not stop the result being recorded.
    # Every key on every row: one executemany takes the shape of the first row.
    row: dict[str, Any] = {
        "request_body": None,
        "status_code": None,
        "response_body": None,
        "error": None,
        "duration_ms": 0.0,
    }
    row.update(call, action_id=action.id, attempt=action.attempt)
    row["path"] = str(row.get("path", ""))[:500]
    row["method"] = str(row.get("method", ""))[:10]
    for key in ("error", "response_body"):
        if row.get(key) is not None:
            row[key] = str(row[key])[:_TEXT_LIMIT]
    return row


async def finish(
    engine: AsyncEngine,
    action: ClaimedAction,
    *,
    token: str,
    status: str,
    error: str | None,
    next_attempt_at: datetime | None,
    calls: Sequence[dict[str, Any]],
    now: datetime,
    outcome: str | None = None,
    note: str | None = None,
    counted: bool = True,
    mirror: ContactWrite | None = None,
) -> bool:
    """Record one step's result, its API calls and what the mirror learned, in one transaction; False when the
    run lost the row meanwhile (its lease ran out and another run took it)."""
    values: dict[str, Any] = {
        "status": status,
        "last_error": error[:_TEXT_LIMIT] if error else None,
        "outcome": outcome,
        "next_attempt_at": next_attempt_at,
        "lease_until": None,
        "claimed_by": None,
        "updated_at": now,
    }
    if not counted:
        values["attempts"] = actions.c.attempts - 1
    if note is not None:
        # A note the row was planned with (who replayed or reconciled it) stays: this one is added to it, once.
        values["note"] = sa.case(
            (actions.c.note.is_(None), note),
            (actions.c.note.endswith(note, autoescape=True), actions.c.note),
            else_=actions.c.note + "; " + note,
        )
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(actions.c.id == action.id, actions.c.status == ActionStatus.RUNNING, actions.c.claimed_by == token)
            .values(**values)
        )
        if result.rowcount != 1:
            return False
        if calls:
            await conn.execute(api_calls.insert(), [_call_row(c, action) for c in calls])
        if mirror is not None:
            await write_contact(conn, mirror)
    return True


async def release(engine: AsyncEngine, token: str, *, now: datetime, next_attempt_at: datetime | None) -> int:
    """Give back the rows a run claimed but did not reach: pending again, their attempt not counted."""
    async with engine.begin() as conn:
        result = await conn.execute(
            actions.update()
            .where(actions.c.claimed_by == token, actions.c.status == ActionStatus.RUNNING)
            .values(
                status=ActionStatus.PENDING,
                attempts=actions.c.attempts - 1,
                lease_until=None,
                claimed_by=None,
                next_attempt_at=next_attempt_at or now,
                updated_at=now,
            )
        )
    return result.rowcount


async def next_for_contact(
    engine: AsyncEngine, email: str | None, *, now: datetime, account: str = "default", modes: Modes | None = None
) -> list[tuple[str, int]]:
    """The contact's next pending action, to hand over as soon as the run before it is done."""
    if email is None:
        return []
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(actions.c.id, actions.c.attempts)
                .where(
                    actions.c.contact_email == email,
                    actions.c.account == account,
                    _in_the_way(now),
                    runnable(modes),
                )
                .order_by(actions.c.order_key)
                .limit(1)
            )
        ).first()
    return [(row.id, row.attempts + 1)] if row is not None else []


async def due_actions(
    engine: AsyncEngine, *, now: datetime, limit: int = 500, modes: Modes | None = None
) -> list[tuple[str, int]]:
    """(action id, next attempt number) of the first due action of each run, higher priorities first, then earlier
    events: pending or scheduled and due, or abandoned; with `modes`, only those planned under their account's
    current mode (the others wait for the operator: app/accounts/modes.py)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.id, actions.c.attempts, actions.c.event_id, actions.c.contact_email, actions.c.account)
            .where(_claimable(now), actions.c.account.not_in(held_accounts()), runnable(modes))
            # Under a backlog higher priorities go first, then earlier events (the dispatch order is the claim order).
            .order_by(actions.c.priority, actions.c.order_key)
            .limit(limit)
        )
        runs: dict[tuple[str, str | None, str], tuple[str, int]] = {}
        for r in rows:
            runs.setdefault((r.event_id, r.contact_email, r.account), (r.id, r.attempts + 1))
    return list(runs.values())
