"""Operator API for payments: who paid for what, and whether they got it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import OperatorDep, StateDep
from app.errors import BadRequest
from app.payments.handled import mark_handled
from app.payments.service import STATUSES, list_payments
from app.store.models import utcnow
from app.timeparse import parse_since

router = APIRouter(prefix="/v1/payments", tags=["operator"])


class Handling(BaseModel):
    reason: str


@router.get("")
async def payments(
    state: StateDep,
    _operator: OperatorDep,
    status: str | None = None,
    since: str | None = "30d",
    source: str | None = None,
    product: str | None = None,
) -> dict[str, Any]:
    try:
        after = parse_since(since) if since else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    if status and status not in STATUSES:
        raise BadRequest(f"status {status!r}: use one of {', '.join(STATUSES)}")
    found = await list_payments(
        state.engine,
        state.rules.sources,
        now=utcnow(),
        deadline=timedelta(minutes=state.settings.access_deadline_minutes),
        since=after,
        status=status,
        source=source,
        product=product,
    )
    return {"items": [item.as_dict() for item in found]}


@router.post("/{event_id}/handled")
async def handled(event_id: str, body: Handling, state: StateDep, operator: OperatorDep) -> dict[str, Any]:
    """Mark an unserved (or pending) payment handled: it stops heading the dashboard and raising the alert."""
    return await mark_handled(
        state.engine,
        state.rules.sources,
        event_id,
        by=operator,
        reason=body.reason,
        now=utcnow(),
        deadline=timedelta(minutes=state.settings.access_deadline_minutes),
    )
