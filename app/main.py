"""create_app(): lifespan, routers, exception handlers; nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.api import actions, contacts, events, metrics, payments, probes, rules
from app.config import Settings, get_settings
from app.errors import AppError, TooManyRequests
from app.state import app_state
from app.ui import pages as ui_pages
from app.ui import router as ui
from app.ui.router import SignIn, error_page, wants_page
from app.webhooks import router as webhooks
from app.webhooks.router import hook_source, receive_hook

log = logging.getLogger(__name__)
# What a read raises when the database cannot be reached (asyncpg's refused connection is a plain OSError).
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    OSError,
    # Raised unwrapped while a connection opens during a PostgreSQL restart (app/store/outages.py).
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


async def _sign_in(_request: Request, _exc: Exception) -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    # An outage is not a bug: the client should retry, and the log says what failed without a traceback.
    log.error("%s %s: the database is unavailable (%s)", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"error": "the database is unavailable: please retry"}, status_code=503)


def _hung_up(method: str, path: str) -> None:
    # The client hung up before its body was read (or it was cut off at BODY_TIMEOUT_SECONDS): nobody is left to
    # answer, nothing was stored, and it is not a bug: one debug line, on every route.
    log.debug("%s %s: the client hung up before its request was read", method, path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI turns a hang-up while it reads a route's body into "400 There was an error parsing the body".
    if isinstance(exc.__cause__, ClientDisconnect):
        _hung_up(request.method, request.url.path)
    return await http_exception_handler(request, exc)


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    if wants_page(request):
        # A person in the dashboard (an expired form, an event gone): a page in words, not a JSON body.
        return error_page(request, exc.message, exc.status_code)
    return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=headers)


class SystemeFlow(FastAPI):
    """FastAPI, with `POST /hooks/{source}` answered ahead of the middleware stack and the router.

    Why: under a burst, Starlette's middleware and routing cost as much per delivery as the signature check and
    the durable write together (see docs/benchmarks.md). The answers are the ones the stack would give: the
    same handler, the same exception handlers, and an unexpected error still reaches uvicorn as a logged 500.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            await self._http(scope, receive, send)
        except ClientDisconnect:
            _hung_up(scope["method"], scope["path"])

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            source = hook_source(scope["path"])
            if source is not None:
                scope["app"] = self
                request = Request(scope, receive)
                try:
                    response = await receive_hook(source, request)
                except AppError as exc:
                    response = await _app_error(request, exc)
                except DATABASE_OUTAGES as exc:
                    response = await _database_down(request, exc)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with app_state(settings) as state:
            app.state.sf = state
            yield

    docs = settings.api_docs
    app = SystemeFlow(
        title="systeme-flow",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, _database_down)
    app.add_exception_handler(SignIn, _sign_in)
    app.include_router(webhooks.router)
    app.include_router(probes.router)
    app.include_router(events.router)
    app.include_router(actions.router)
    app.include_router(payments.router)
    app.include_router(contacts.router)
    app.include_router(rules.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    app.include_router(ui_pages.router)
    app.include_router(ui.home)
    app.mount("/ui/static", StaticFiles(directory=str(Path(__file__).parent / "ui" / "static")), name="ui-static")
    return app
