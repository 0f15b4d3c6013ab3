"""Operator API for actions: list, retry (one or in bulk), approve, reject, run a scheduled step now or cancel it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel

from app.deps import OperatorDep, StateDep
from app.errors import BadRequest, NotFound
from app.operator import service
from app.store.queries import ACTION_STATUSES, get_action, list_actions

router = APIRouter(prefix="/v1/actions", tags=["operator"])


class Rejection(BaseModel):
    reason: str | None = None


Reason = Annotated[Rejection | None, Body()]


class BulkRetry(BaseModel):
    status: str | None = None
    rule: str | None = None


@router.get("")
async def actions(
    state: StateDep,
    _operator: OperatorDep,
    status: str | None = None,
    rule: str | None = None,
    contact: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> dict[str, Any]:
    if status and status not in ACTION_STATUSES:
        raise BadRequest(f"status {status!r}: use one of {', '.join(ACTION_STATUSES)}")
    items, next_cursor = await list_actions(
        state.engine, status=status, rule=rule, contact=contact, limit=limit, cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.post("/retry")
async def retry_many(body: BulkRetry, state: StateDep, operator: OperatorDep) -> dict[str, Any]:
    if body.status is None and body.rule is None:
        raise BadRequest('say which actions to retry: {"status": "dead"}, {"rule": "<id>"} or both')
    retried = await service.retry_many(
        state.engine,
        state.dispatcher,
        by=operator,
        status=body.status,
        rule=body.rule,
        modes=state.clients.modes,
    )
    return {"retried": retried}


@router.get("/{action_id}")
async def action(action_id: str, state: StateDep, _operator: OperatorDep) -> dict[str, Any]:
    found = await get_action(state.engine, action_id)
    if found is None:
        raise NotFound(f"no action {action_id!r}")
    return found


@router.post("/{action_id}/retry")
async def retry(action_id: str, state: StateDep, operator: OperatorDep) -> dict[str, Any]:
    return await service.retry(state.engine, state.dispatcher, action_id, by=operator, modes=state.clients.modes)


@router.post("/{action_id}/approve")
async def approve(action_id: str, state: StateDep, operator: OperatorDep) -> dict[str, Any]:
    return await service.approve(state.engine, state.dispatcher, action_id, by=operator, modes=state.clients.modes)


@router.post("/{action_id}/reject")
async def reject(action_id: str, state: StateDep, operator: OperatorDep, body: Reason = None) -> dict[str, Any]:
    return await service.reject(state.engine, action_id, by=operator, reason=body.reason if body else None)


@router.post("/{action_id}/run-now")
async def run_now(action_id: str, state: StateDep, operator: OperatorDep) -> dict[str, Any]:
    return await service.run_now(state.engine, state.dispatcher, action_id, by=operator, modes=state.clients.modes)


@router.post("/{action_id}/cancel")
async def cancel(action_id: str, state: StateDep, operator: OperatorDep, body: Reason = None) -> dict[str, Any]:
    return await service.cancel(state.engine, action_id, by=operator, reason=body.reason if body else None)
