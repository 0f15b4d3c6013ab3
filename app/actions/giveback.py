"""A run whose account has no quota left gives its worker slot back instead of sleeping in it (issue 20).

It asks the account's quota (granting nothing) before it claims its actions and before each later step; when the
wait is longer than a slot may wait (`QUOTA_SLOT_WAIT_SECONDS`) it comes back when the quota refills, so another
account's runs take the slot meanwhile. Nothing is lost: a run not claimed stays pending and due, one given back
between steps releases its rows with that due time, and the sweep dispatches both should the hint be lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.actions import head_of
from app.store.models import utcnow
from app.store.statuses import Priority
from app.systeme.client import SystemeClient

if TYPE_CHECKING:
    from app.accounts.registry import AccountClients

# Seconds a begun step's requests together may wait for the quota in the slot: given back halfway, a step would
# spend its first requests (the contact's lookup) again.
STEP_QUOTA_WAIT = 1.0


async def come_back_at(client: SystemeClient, priority: Priority, slot_wait: float) -> datetime | None:
    """When to come back, if the account's quota is short for longer than `slot_wait` seconds; else None."""
    if client.dry_run:
        return None
    wait = await client.quota.wait_seconds(priority=priority)
    return utcnow() + timedelta(seconds=wait) if wait > slot_wait else None


async def before_claim(
    engine: AsyncEngine, clients: AccountClients, action_id: str, slot_wait: float
) -> tuple[datetime, tuple[str, int], Priority] | None:
    """(when, the job to dispatch then, its priority) if the run should not be claimed now; else None."""
    head = await head_of(engine, action_id)
    chosen = clients.client(head[0]) if head is not None else None
    if head is None or chosen is None:
        return None
    due = await come_back_at(chosen, head[1], slot_wait)
    return (due, (action_id, head[2]), head[1]) if due is not None else None
