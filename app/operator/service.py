"""What an operator does to actions and events, shared by the HTTP API and the CLI."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes, describe
from app.errors import Conflict, NotFound
from app.operator.modes import refuse_other_mode
from app.pipeline.dispatch import Dispatcher
from app.rules.engine import RuleSet
from app.rules.schema import DEFAULT_ACCOUNT
from app.store import operator as transitions
from app.store.events import replan_event
from app.store.models import utcnow
from app.store.queries import get_action
from app.store.statuses import ActionStatus

log = logging.getLogger(__name__)


async def _hand_over(dispatcher: Dispatcher | None, items: Sequence[tuple[str, int]]) -> None:
    if dispatcher is None or not items:
        return  # the service's sweep picks them up: they are pending and due
    try:
        await dispatcher.dispatch(items)
    except Exception:
        log.exception("dispatching %d actions failed; the sweep will pick them up", len(items))


async def _current(engine: AsyncEngine, action_id: str) -> dict[str, Any]:
    action = await get_action(engine, action_id)
    if action is None:
        raise NotFound(f"no action {action_id!r}")
    return action


async def approve(
    engine: AsyncEngine, dispatcher: Dispatcher | None, action_id: str, *, by: str, modes: Modes | None = None
) -> dict[str, Any]:
    # An approval would never run either: the same 409 as run-now, rather than an approved step that waits forever.
    await refuse_other_mode(engine, action_id, modes)
    handed = await transitions.approve(engine, action_id, by=by, now=utcnow())
    if handed is None:
        action = await _current(engine, action_id)
        raise Conflict(f"action {action_id} is {action['status']}, not awaiting approval")
    log.info("action approved by %s", by, extra={"action_id": action_id})
    await _hand_over(dispatcher, handed)  # nothing when it is a delayed step now scheduled: the sweep runs it then
    return await _current(engine, action_id)


async def run_now(
    engine: AsyncEngine, dispatcher: Dispatcher | None, action_id: str, *, by: str, modes: Modes | None = None
) -> dict[str, Any]:
    """A scheduled step runs now instead of at its time; never one planned under another mode (`modes`: account ->
    its current mode)."""
    await refuse_other_mode(engine, action_id, modes)
    handed = await transitions.run_now(engine, action_id, by=by, now=utcnow())
    if not handed:
        action = await _current(engine, action_id)
        if action["status"] != ActionStatus.SCHEDULED:
            raise Conflict(f"action {action_id} is {action['status']}, not scheduled")
        earlier = await transitions.earlier_scheduled(engine, action_id)
        if earlier is not None:
            raise Conflict(
                f"action {action_id} waits behind {earlier[0]} ({earlier[1]}), an earlier step of its rule that is "
                "scheduled too: run that one now first, or cancel it"
            )
        raise Conflict(f"action {action_id} changed meanwhile: reload it")
    log.info("scheduled action run now by %s", by, extra={"action_id": action_id})
    await _hand_over(dispatcher, handed)
    return await _current(engine, action_id)


async def cancel(engine: AsyncEngine, action_id: str, *, by: str, reason: str | None) -> dict[str, Any]:
    """A scheduled step will not run: cancelled, with who (and why)."""
    if not await transitions.cancel(engine, action_id, by=by, reason=reason, now=utcnow()):
        action = await _current(engine, action_id)
        raise Conflict(f"action {action_id} is {action['status']}, not scheduled")
    log.info("scheduled action cancelled by %s", by, extra={"action_id": action_id})
    return await _current(engine, action_id)


async def reject(engine: AsyncEngine, action_id: str, *, by: str, reason: str | None) -> dict[str, Any]:
    if not await transitions.reject(engine, action_id, by=by, reason=reason, now=utcnow()):
        action = await _current(engine, action_id)
        raise Conflict(f"action {action_id} is {action['status']}, not awaiting approval")
    log.info("action rejected by %s", by, extra={"action_id": action_id})
    return await _current(engine, action_id)


async def retry(
    engine: AsyncEngine, dispatcher: Dispatcher | None, action_id: str, *, by: str, modes: Modes | None = None
) -> dict[str, Any]:
    await refuse_other_mode(engine, action_id, modes)
    handed = await transitions.retry(engine, by=by, now=utcnow(), action_id=action_id)
    if not handed:
        action = await _current(engine, action_id)
        raise Conflict(f"action {action_id} is {action['status']}: only failed, dead, rejected or skipped ones retry")
    await _hand_over(dispatcher, handed)
    return await _current(engine, action_id)


async def retry_many(
    engine: AsyncEngine,
    dispatcher: Dispatcher | None,
    *,
    by: str,
    status: str | None,
    rule: str | None,
    modes: Modes | None = None,
) -> list[str]:
    """Retry every matching action planned under its account's current mode; the others are left as they are."""
    handed = await transitions.retry(engine, by=by, now=utcnow(), status=status, rule=rule, modes=modes)
    await _hand_over(dispatcher, handed)
    return [action_id for action_id, _ in handed]


async def replay(
    engine: AsyncEngine,
    dispatcher: Dispatcher | None,
    rules: RuleSet,
    event_id: str,
    *,
    by: str,
    approval_window: timedelta,
    modes: Modes | None = None,
) -> dict[str, Any]:
    """Run a stored event through the current rules again; new actions go through approval where required. With
    `modes`, it is planned under the accounts now configured, and the answer says which."""
    under = describe(modes.get(DEFAULT_ACCOUNT)) if modes is not None else None

    def plan(source: str, event_type: str | None, payload: dict[str, Any]) -> Any:
        return rules.plan(source=source, event_type=event_type, payload=payload)

    note = f"replayed by {by}" + (f" under {under}" if under else "")
    replanned = await replan_event(
        engine, event_id, plan, now=utcnow(), approval_window=approval_window, note=note, modes=modes
    )
    if replanned is None:
        raise NotFound(f"no event {event_id!r}")
    planned, runs = replanned
    await _hand_over(dispatcher, [(action_id, 1) for action_id in runs])
    answer: dict[str, Any] = {
        "event_id": event_id,
        "rules_version": rules.version,
        "actions": [{"id": i, "status": s} for i, s in planned],
    }
    if under is not None:
        answer["planned_under"] = under
    return answer
