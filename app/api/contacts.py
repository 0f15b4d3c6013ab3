"""A person: their whole story, and forgetting them (privacy)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import OperatorDep, StateDep
from app.operator.story import contact_story
from app.store.retention import forget

router = APIRouter(prefix="/v1/contacts", tags=["operator"])


@router.delete("/{email}")
async def forget_contact(email: str, state: StateDep, _operator: OperatorDep) -> dict[str, int]:
    """Erase payloads, headers and rendered fields that concern this email; anonymous counts remain."""
    return await forget(state.engine, email)


@router.get("/{email}")
async def contact(email: str, state: StateDep, _operator: OperatorDep) -> dict[str, Any]:
    """Everything about one person: events, rule decisions, actions and their API calls, scheduled steps, mirror."""
    return await contact_story(state.engine, state.rules.sources, email)
