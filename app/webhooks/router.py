"""`POST /hooks/{source}`: the public ingest endpoint.

One route, declared here (and so in the OpenAPI document). Its POSTs are answered by the same handler from
app.main.SystemeFlow, ahead of the middleware stack and the router: under load, Starlette's routing and FastAPI's
parameter and dependency machinery cost as much as the signature check and the durable write together.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from app.deps import StateDep, get_state
from app.state import AppState
from app.telemetry import INGEST_SECONDS
from app.webhooks.body import build_delivery, read_body
from app.webhooks.service import answer_head, check_rate, check_sender, check_token_first, ingest, source_config

router = APIRouter(tags=["webhooks"])


@router.post(
    "/hooks/{source}",
    status_code=202,
    responses={
        200: {"description": "A delivery seen before, or a provider's set-up ping (nothing stored)"},
        303: {"description": "Form with redirect"},
        400: {"description": "Body that cannot be parsed"},
        401: {"description": "Bad or missing signature or token"},
        404: {"description": "Unknown source"},
        413: {"description": "Body over the limit"},
        415: {"description": "Unsupported content type"},
        429: {"description": "Rate limit of an unsigned source"},
        503: {"description": "Storage unavailable: retry"},
    },
)
async def receive(source: str, request: Request, state: StateDep) -> Response:
    """Store one delivery (verified) and answer; actions run afterwards."""
    return await _timed(source, request, state)


def hook_source(path: str) -> str | None:
    """The source named by a `/hooks/{source}` path (as the route matches it: one non-empty segment), or None."""
    if not path.startswith("/hooks/"):
        return None
    source = path[7:]
    return source if source and "/" not in source else None


async def receive_hook(source: str, request: Request) -> Response:
    """The handler itself, for the route and for the app's shortcut ahead of the stack (app.main.SystemeFlow)."""
    return await _timed(source, request, await get_state(request))


async def _timed(source: str, request: Request, state: AppState) -> Response:
    started = time.perf_counter()
    try:
        return await _receive(source, request, state)
    finally:
        if source in state.rules.sources:
            INGEST_SECONDS.labels(source).observe(time.perf_counter() - started)


async def _receive(source: str, request: Request, state: AppState) -> Response:
    config = source_config(state, source)
    headers = {k.lower(): v for k, v in request.headers.items()}
    peer = request.client.host if request.client else None
    check_sender(state, source=source, config=config, peer=peer, headers=headers)
    await check_rate(state, source=source, config=config, peer=peer, headers=headers)
    query = dict(request.query_params)
    check_token_first(source=source, config=config, headers=headers, query=query)
    body = await read_body(request, state.settings.max_body_bytes)
    delivery = await build_delivery(config.type, headers, body, query, max_fields=state.settings.max_form_fields)
    result = await ingest(state, source=source, delivery=delivery)
    if result.ping:
        # WooCommerce keeps a new webhook only when its ping gets exactly 200.
        return JSONResponse({"ping": True}, status_code=200)
    if result.redirect:
        return RedirectResponse(result.redirect, status_code=303)
    return JSONResponse(
        {"event_id": result.event_id, "duplicate": result.duplicate},
        status_code=200 if result.duplicate else 202,
    )


@router.head("/hooks/{source}", responses={200: {"description": "A known source"}, 404: {"description": "Unknown"}})
async def probe(source: str, state: StateDep) -> Response:
    """Answer URL validators that probe the endpoint before saving it; nothing is read or stored."""
    answer_head(state, source)
    return Response(status_code=200)
