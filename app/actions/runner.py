"""Run one action attempt: claim it, resolve the contact, do the step, record the outcome."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.actions.contacts import upsert_contact
from app.actions.steps import STEPS
from app.store.actions import claim, finish, next_for_contact, ran_out_of_order
from app.store.models import utcnow
from app.systeme.client import SystemeClient
from app.systeme.errors import PermanentApiError, TransientApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 170.0
    max_attempts: int = 10
    lease: timedelta = timedelta(minutes=5)
    # How long an action waits for an earlier action of the same contact before it runs anyway.
    ordering_wait: timedelta = timedelta(minutes=10)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the API asked."""
        backoff = self.base_seconds * (2 ** (attempt - 1))
        return max(retry_after or 0.0, random.uniform(backoff / 2, backoff))


@dataclass(frozen=True)
class RunResult:
    status: str  # the action's status after this attempt, or "not_claimed"
    # When the action should be tried again (pending), so the caller can schedule the next job.
    next_attempt_at: datetime | None = None
    next_attempt: int = 0
    # Actions of the same contact that were waiting for this one: dispatch them now.
    follow_up: tuple[tuple[str, int], ...] = ()


async def run_action(*, engine: AsyncEngine, client: SystemeClient, action_id: str, policy: RetryPolicy) -> RunResult:
    action = await claim(engine, action_id, now=utcnow(), lease=policy.lease, ordering_wait=policy.ordering_wait)
    if action is None:
        return RunResult("not_claimed")
    note = None
    if await ran_out_of_order(engine, action):
        note = "out of order: an action of a later event for this contact already ran"
    api = client.session()
    context = {
        "action_id": action.id,
        "event_id": action.event_id,
        "rule_id": action.rule_id,
        "kind": action.kind,
    }
    status, error, next_at = "succeeded", None, None
    try:
        contact = await upsert_contact(api, action.contact) if action.contact else None
        unmet = tag_condition(action.contact, contact)
        if unmet:
            status, error = "skipped", unmet
            log.info("action skipped: %s", unmet, extra=context)
        else:
            done = await STEPS[action.kind](api, contact, action.params)
            log.info("action succeeded: %s", done, extra=context)
    except PermanentApiError as exc:
        status, error = "failed", exc.message
        log.warning("action failed: %s", exc.message, extra=context)
    except TransientApiError as exc:
        status, error, next_at = _transient(action.attempt, exc.message, exc.retry_after, policy)
        log.warning("action attempt %d failed, %s: %s", action.attempt, status, exc.message, extra=context)
    except Exception as exc:
        # A bug or an answer we did not expect: keep the row retryable and visible rather than lose it.
        log.exception("action attempt %d crashed", action.attempt, extra=context)
        status, error, next_at = _transient(action.attempt, f"unexpected error: {exc!r}", None, policy)
    recorded = await finish(
        engine, action, status=status, error=error, next_attempt_at=next_at, calls=api.calls, now=utcnow(), note=note
    )
    if not recorded:
        log.warning("lease lost before the result was recorded; another worker owns the action", extra=context)
        return RunResult("not_claimed")
    follow_up = [f for f in await next_for_contact(engine, action.contact_email, now=utcnow()) if f[0] != action.id]
    return RunResult(status, next_at, action.attempt + 1, tuple(follow_up))


def tag_condition(spec: dict[str, Any] | None, contact: dict[str, Any] | None) -> str | None:
    """Why the rule's `unless_tagged` / `only_if_tagged` stops this action now, or None when it may run."""
    if not spec or contact is None:
        return None
    tags = {str(t.get("name")) for t in contact.get("tags") or [] if isinstance(t, dict)}
    if spec.get("unless_tagged") and spec["unless_tagged"] in tags:
        return f"skipped: the contact is tagged {spec['unless_tagged']!r} (unless_tagged)"
    if spec.get("only_if_tagged") and spec["only_if_tagged"] not in tags:
        return f"skipped: the contact is not tagged {spec['only_if_tagged']!r} (only_if_tagged)"
    return None


def _transient(
    attempt: int, message: str, retry_after: float | None, policy: RetryPolicy
) -> tuple[str, str, datetime | None]:
    if attempt >= policy.max_attempts:
        return "dead", f"gave up after {attempt} attempts: {message}", None
    return "pending", message, utcnow() + timedelta(seconds=policy.delay(attempt, retry_after))
