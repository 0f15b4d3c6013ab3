"""Dependency aliases, so routes read as plain type hints."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import Forbidden, Unauthorized
from app.state import AppState


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a plain def dependency in its thread pool, a cost on every request.
    state: AppState = request.app.state.sf
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def operator_for(settings: Settings, given: str) -> str | None:
    """The operator whose token this is, or None."""
    name = None
    for token, operator in settings.operators().items():
        # Compare with every token, whatever matches first, so the time taken tells nothing.
        if hmac.compare_digest(given.encode(), token.encode()):
            name = operator
    return name if given else None


async def require_operator(request: Request, state: StateDep) -> str:
    """The operator's name; the API is closed until ADMIN_TOKEN is set."""
    if state.settings.admin_token is None:
        raise Forbidden("the operator API is disabled: set ADMIN_TOKEN to enable it")
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    name = operator_for(state.settings, given)
    if name is None:
        raise Unauthorized("missing or wrong operator token: send Authorization: Bearer <ADMIN_TOKEN>")
    return name


OperatorDep = Annotated[str, Depends(require_operator)]
