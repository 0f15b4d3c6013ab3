"""`forget EMAIL --in-systeme`: erase the person's contact in Systeme.io, recorded, then forget them here.

The order is the point. The erasure runs first, as a recorded `delete_contact` (app/store/erasures.py), while its
email is still known; only once Systeme.io has no such contact (deleted now, or not there) is the person forgotten
locally, the erasure's own rows with the rest: what remains of them names nobody. If Systeme.io could not be
reached or refused, nothing is forgotten, so the command can simply be run again (it is idempotent: a contact
already gone is done). Nothing of the person's may run behind the erasure: their waiting steps are cancelled as it
is planned, and it is not sent while one of theirs runs (past a lease, the command fails: run it again).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.registry import AccountClients
from app.actions.policy import RetryPolicy
from app.actions.runner import run_actions
from app.errors import AppError, BadRequest
from app.store.erasures import PlannedErasure, erasure_state, give_up, keep_the_record, plan_erasure
from app.store.models import utcnow
from app.store.retention import forget, remains
from app.store.statuses import ActionStatus

# Another process (the service's sweep) may take the run first: how long to wait for its result.
SETTLE_SECONDS = 60.0
# Forgetting again after a webhook about the person came in meanwhile: a few times, not forever.
FORGET_TRIES = 3


class NotErased(AppError):
    """Systeme.io did not erase the contact: nothing was forgotten here, run the command again."""

    status_code = 502


async def _settled(engine: AsyncEngine, action_id: str) -> Any:
    deadline = time.monotonic() + SETTLE_SECONDS
    state = await erasure_state(engine, action_id)
    while state.status == ActionStatus.RUNNING and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        state = await erasure_state(engine, action_id)
    return state


class StillRunning(AppError):
    """One of the person's steps kept running: nothing was erased or forgotten, run the command again."""

    status_code = 409


async def _planned(
    engine: AsyncEngine, clients: AccountClients, policy: RetryPolicy, *, email: str, account: str, by: str
) -> PlannedErasure:
    # A run holds its rows for a lease at a time: past one, it is either over or long enough to be worth a new try.
    deadline = time.monotonic() + policy.lease.total_seconds()
    while True:
        erasure = await plan_erasure(
            engine,
            email=email,
            account=account,
            by=by,
            now=utcnow(),
            mode=clients.modes.get(account),
            event_mode=clients.modes.get("default"),
        )
        if erasure is not None:
            return erasure
        if time.monotonic() >= deadline:
            raise StillRunning(
                f"a step of {email}'s is still running (account {account} or another): nothing was erased or "
                "forgotten, run the command again once it is over"
            )
        await asyncio.sleep(0.2)


async def forget_in_systeme(
    engine: AsyncEngine, clients: AccountClients, policy: RetryPolicy, *, email: str, account: str, by: str
) -> dict[str, Any]:
    """Erase `email`'s contact on `account` (recorded), then forget the person here; NotErased when it failed."""
    try:
        email = validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise BadRequest(f"{email!r} is not an email address: {exc}") from exc
    problem = clients.problem(account)
    client = clients.client(account)
    if problem is not None or client is None:
        raise BadRequest(problem or f"account '{account}' is not configured")
    if client.dry_run:
        raise BadRequest("no MATON_API_KEY or SYSTEME_API_KEY is set: nothing can be erased in Systeme.io")
    now = utcnow()
    erasure = await _planned(engine, clients, policy, email=email, account=account, by=by)
    # The operator asked now: nothing of the person's waits ahead of it (their waiting steps were cancelled, none runs).
    now_policy = replace(policy, ordering_wait=timedelta(0), unjudged_wait=timedelta(0))
    await run_actions(engine=engine, client=clients, action_id=erasure.action_id, policy=now_policy)
    state = await _settled(engine, erasure.action_id)
    if state.status != ActionStatus.SUCCEEDED:
        why = state.last_error or state.outcome or state.status
        if state.status == ActionStatus.PENDING:
            await give_up(engine, erasure.action_id, why=f"not erased, run forget --in-systeme again ({why})", now=now)
        raise NotErased(
            f"the contact was not erased in Systeme.io (account {account}): {why}; nothing was forgotten here, "
            f"run the command again (action {erasure.action_id})"
        )
    forgotten = await forget(engine, email)
    # A webhook about the person may have come in meanwhile: forget again until nothing stored names them.
    for _ in range(FORGET_TRIES):
        if not await remains(engine, email):
            break
        again = await forget(engine, email)
        forgotten = {key: forgotten[key] + again[key] for key in forgotten}
    await keep_the_record(engine, erasure, by=by, account=account)
    return {
        "account": account,
        "erased": {"action_id": erasure.action_id, "event_id": erasure.event_id, "outcome": state.outcome},
        "forgotten": forgotten,
    }
