"""A mirror sync is a duty of its own, one holder per account at a time: lease `mirror-sync:<account>` in table
`leases` (app/store/leases.py), taken by whichever process asks first and renewed by its holder while it reads.

However long a read takes (a big account during a launch, its requests low priority), nobody else starts it: its
holder renews the lease every quarter of SYNC_TURN. A holder that dies stops renewing, the lease ends within
SYNC_TURN, and the next process to ask goes on from the page the read reached (app/mirror/full.py). A holder that
finds its lease taken (it could not renew in time) stops reading at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import leases
from app.store.models import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a sync's lease lasts without renewal: how soon a dead holder's read is taken over.
SYNC_TURN = timedelta(minutes=2)
# A read that failed is tried again (from where it stopped) this long after, by whoever asks then.
AFTER_FAILURE = timedelta(minutes=5)


def duty(account: str) -> str:
    return f"mirror-sync:{account}"


class LeaseLost(Exception):
    """Another process holds the sync's lease now: this one stopped reading."""


async def holding(engine: AsyncEngine, name: str, holder: str, *, turn: timedelta, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` while renewing `holder`'s turn of duty `name` (taken already); LeaseLost when it was lost."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=turn.total_seconds() / 4)
            if done:
                return task.result()
            try:
                kept = await leases.renew(engine, name, holder, turn=turn, now=utcnow())
            except Exception:
                # The database is slow or away for a moment: three more beats before the turn ends.
                log.warning("renewing the lease of %s failed; trying again", name, exc_info=True)
                continue
            if not kept:
                raise LeaseLost(name)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: raised above already, or of no interest once the lease was lost
