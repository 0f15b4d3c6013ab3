"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.deps import StateDep
from app.rules.schema import DEFAULT_ACCOUNT
from app.store.holds import holds
from app.store.statuses import AccountState

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    # A refused reload does not make the replica unready: the previous rules still serve. It shows here.
    checks: dict[str, Any] = {"rules": {"ok": True, "version": state.rules.version, "error": state.rules_error}}
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    if state.redis is not None:
        try:
            await state.redis.ping()
            checks["redis"] = {"ok": True}
        except Exception as exc:
            checks["redis"] = {"ok": False, "error": type(exc).__name__}
    checks["mode"] = {"ok": True, "api": state.settings.api_mode, "embedded": state.settings.embedded}
    ready = all(c["ok"] for c in checks.values())
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    if checks["database"]["ok"]:
        # A held account does not make the service unready: ingest keeps storing events; it says so here.
        held = {h.account: h for h in await holds(state.engine)}
        body["accounts"] = {
            name: {"state": AccountState.HELD, "reason": held[name].reason, "since": held[name].since.isoformat()}
            if name in held
            else {"state": AccountState.OK}
            for name in sorted({*state.clients.accounts, *held})
        }
        body["account"] = body["accounts"].get(DEFAULT_ACCOUNT, {"state": AccountState.OK})
    return JSONResponse(body, status_code=200 if ready else 503)
