"""Privacy: forget a person."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import OperatorDep, StateDep
from app.store.retention import forget

router = APIRouter(prefix="/v1/contacts", tags=["operator"])


@router.delete("/{email}")
async def forget_contact(email: str, state: StateDep, _operator: OperatorDep) -> dict[str, int]:
    """Erase payloads, headers and rendered fields that concern this email; anonymous counts remain."""
    return await forget(state.engine, email)
