"""`POST /hooks/{source}`: the public ingest endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from app.deps import StateDep
from app.webhooks.body import build_delivery, read_body
from app.webhooks.service import ingest, source_config

router = APIRouter(tags=["webhooks"])


@router.post(
    "/hooks/{source}",
    status_code=202,
    responses={200: {"description": "A delivery seen before"}, 303: {"description": "Form with redirect"}},
)
async def receive(source: str, request: Request, state: StateDep) -> Response:
    """Store one delivery (verified) and answer; actions run afterwards."""
    config = source_config(state, source)
    body = await read_body(request, state.settings.max_body_bytes)
    delivery = await build_delivery(config.type, request.headers, body, request.query_params)
    result = await ingest(state, source=source, delivery=delivery)
    if result.redirect:
        return RedirectResponse(result.redirect, status_code=303)
    return JSONResponse(
        {"event_id": result.event_id, "duplicate": result.duplicate},
        status_code=200 if result.duplicate else 202,
    )
