"""Operator API for events: what came in, what it did, and replaying it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query

from app.deps import OperatorDep, StateDep
from app.errors import BadRequest, NotFound
from app.operator import service
from app.store.queries import ACTION_STATUSES, get_event, list_events
from app.timeparse import parse_since

router = APIRouter(prefix="/v1/events", tags=["operator"])


@router.get("")
async def events(
    state: StateDep,
    _operator: OperatorDep,
    source: str | None = None,
    type: str | None = None,
    status: str | None = None,
    since: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> dict[str, Any]:
    try:
        after = parse_since(since) if since else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    if status and status not in ACTION_STATUSES:
        raise BadRequest(f"status {status!r}: use one of {', '.join(ACTION_STATUSES)}")
    items, next_cursor = await list_events(
        state.engine, source=source, event_type=type, status=status, since=after, limit=limit, cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{event_id}")
async def event(event_id: str, state: StateDep, _operator: OperatorDep) -> dict[str, Any]:
    found = await get_event(state.engine, event_id)
    if found is None:
        raise NotFound(f"no event {event_id!r}")
    return found


@router.post("/{event_id}/replay")
async def replay(event_id: str, state: StateDep, operator: OperatorDep) -> dict[str, Any]:
    """Run the stored event through the current rules again; effects stay idempotent."""
    return await service.replay(
        state.engine,
        state.dispatcher,
        state.rules,
        event_id,
        by=operator,
        approval_window=timedelta(hours=state.settings.approval_timeout_hours),
        modes=state.clients.modes,
    )
