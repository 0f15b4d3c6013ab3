"""The service keeps complete mirrors current by itself: from the upkeep (app/pipeline/upkeep.py), once per account."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.registry import AccountClients
from app.mirror.service import complete_accounts
from app.mirror.sync import SyncReport, sync_account
from app.rules.schema import RulesFile
from app.store.mirror import all_syncs
from app.systeme.errors import ApiError

log = logging.getLogger(__name__)


async def keep_mirrors(
    engine: AsyncEngine, clients: AccountClients, rules: RulesFile | None, *, every: timedelta, now: datetime
) -> list[SyncReport]:
    """Read in full each complete mirror never synced under its account's current mode, or last synced `every` ago
    or more. A full read, not an incremental one: it is what sees the hand edits no webhook told us of."""
    syncs = await all_syncs(engine)
    reports = []
    for name in complete_accounts(clients):
        mode, client = clients.modes.get(name), clients.client(name)
        if mode is None or client is None or client.dry_run or clients.problem(name) is not None:
            continue
        synced = syncs.get(name)
        if synced is not None and synced.mode == mode and now - synced.synced_at < every:
            continue
        try:
            report = await sync_account(engine, client, account=name, mode=mode, rules=rules, full=True)
        except ApiError as exc:
            # Tried again at the next upkeep; meanwhile the mirror is used as it is (or, never synced, not trusted).
            log.warning("mirror sync of account %s failed: %s", name, exc.message)
            continue
        log.info(
            "mirror of account %s synced: %d contacts read, %d requests",
            name,
            report.contacts_read,
            report.requests,
        )
        reports.append(report)
    return reports
