"""create_app(): lifespan, routers, exception handlers; nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from app.api import actions, contacts, events, health, metrics, rules
from app.config import Settings, get_settings
from app.errors import AppError, TooManyRequests
from app.state import app_state
from app.ui import router as ui
from app.ui.router import SignIn
from app.webhooks import router as webhooks


async def _sign_in(_request: Request, _exc: Exception) -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with app_state(settings) as state:
            app.state.sf = state
            yield

    app = FastAPI(title="systeme-flow", version="0.1.0", lifespan=lifespan)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(SignIn, _sign_in)
    app.router.routes[:0] = webhooks.routes
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(actions.router)
    app.include_router(contacts.router)
    app.include_router(rules.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    app.include_router(ui.home)
    app.mount("/ui/static", StaticFiles(directory=str(Path(__file__).parent / "ui" / "static")), name="ui-static")
    return app
