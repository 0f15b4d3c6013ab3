"""Steps that act on this service's own rows instead of Systeme.io, run in order with a run's other steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.actions.params import CancelScheduledParams
from app.store.actions import ClaimedAction
from app.store.models import utcnow
from app.store.schedule import cancel_rule_steps

LocalStep = Callable[[AsyncEngine, ClaimedAction, Any], Awaitable[str]]


async def cancel_scheduled(engine: AsyncEngine, action: ClaimedAction, params: CancelScheduledParams) -> str:
    rule = params.rule
    count = await cancel_rule_steps(engine, action, rule=rule, now=utcnow())
    if not count:
        return f"nothing to cancel: no step of rule {rule} was waiting for this contact"
    return f"cancelled {count} waiting step{'' if count == 1 else 's'} of rule {rule}"


LOCAL_STEPS: dict[str, LocalStep] = {"cancel_scheduled": cancel_scheduled}
