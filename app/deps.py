"""Dependency aliases, so routes read as plain type hints."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.errors import Forbidden, Unauthorized
from app.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.sf
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def require_operator(request: Request, state: StateDep) -> str:
    """The operator's name; the API is closed until ADMIN_TOKEN is set."""
    if state.settings.admin_token is None:
        raise Forbidden("the operator API is disabled: set ADMIN_TOKEN to enable it")
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    name = None
    for token, operator in state.settings.operators().items():
        # Compare with every token, whatever matches first, so the time taken tells nothing.
        if hmac.compare_digest(given.encode(), token.encode()):
            name = operator
    if not given or name is None:
        raise Unauthorized("missing or wrong operator token: send Authorization: Bearer <ADMIN_TOKEN>")
    return name


OperatorDep = Annotated[str, Depends(require_operator)]
