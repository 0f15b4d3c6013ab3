"""Operator reads: what came in and what it did."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from app.deps import OperatorDep, StateDep
from app.errors import NotFound
from app.store.queries import get_event, list_events

router = APIRouter(prefix="/v1", tags=["operator"])


@router.get("/events")
async def events(
    state: StateDep,
    _operator: OperatorDep,
    source: str | None = None,
    type: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> dict[str, Any]:
    items, next_cursor = await list_events(state.engine, source=source, event_type=type, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/events/{event_id}")
async def event(event_id: str, state: StateDep, _operator: OperatorDep) -> dict[str, Any]:
    found = await get_event(state.engine, event_id)
    if found is None:
        raise NotFound(f"no event {event_id!r}")
    return found
