"""Operator endpoints for the rules: what is loaded, reload it, try an event against it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.deps import OperatorDep, StateDep
from app.preview.service import explain
from app.webhooks.body import build_delivery

router = APIRouter(prefix="/v1/rules", tags=["operator"])


class RuleTest(BaseModel):
    source: str
    payload: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)


@router.get("")
async def loaded(state: StateDep, _operator: OperatorDep) -> dict[str, Any]:
    rules = state.rules
    return {
        "version": rules.version,
        "path": rules.loaded.path,
        "error": state.rules_error,
        "sources": {name: source.type for name, source in rules.sources.items()},
        "rules": [
            {"id": r.id, "description": r.description, "enabled": r.enabled, "on": list(r.on), "if": r.if_}
            for r in rules.rules
        ],
    }


@router.post("/reload")
async def reload(state: StateDep, _operator: OperatorDep) -> JSONResponse:
    """Reload the rules file; a broken file is refused (400) and the rules in force stay."""
    ok = await asyncio.to_thread(state.reload_rules)
    body = {"reloaded": ok, "version": state.rules.version, "error": state.rules_error}
    return JSONResponse(body, status_code=200 if ok else 400)


@router.post("/test")
async def test_event(test: RuleTest, state: StateDep, _operator: OperatorDep) -> dict[str, Any]:
    """Explain an event against the loaded rules: no signature check, no side effects."""
    config = state.rules.sources.get(test.source)
    headers = {"content-type": "application/json", **{k.lower(): v for k, v in test.headers.items()}}
    body = json.dumps(test.payload).encode()
    delivery = await build_delivery(config.type if config else "", headers, body, {})
    return await explain(state.rules, source=test.source, delivery=delivery, engine=state.engine)
