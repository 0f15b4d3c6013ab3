"""The service keeps complete mirrors current by itself, each account's sync a duty of its own (app/mirror/duty.py):
every process asks for it (each worker's `mirror_sync` cron, each embedded API replica's sweep loop, in a task of
its own) and the one that takes the account's lease reads it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.registry import AccountClients
from app.mirror.duty import AFTER_FAILURE, SYNC_TURN, LeaseLost, duty, holding
from app.mirror.report import SyncReport
from app.mirror.service import complete_accounts
from app.mirror.sync import sync_account
from app.rules.schema import RulesFile
from app.store import leases
from app.store.mirror import SyncRecord, all_syncs, load_sync
from app.store.models import utcnow
from app.systeme.errors import ApiError

log = logging.getLogger(__name__)


def _due(synced: SyncRecord | None, mode: str, every: timedelta, now: datetime) -> bool:
    return synced is None or synced.mode != mode or now - synced.synced_at >= every


async def keep_mirrors(
    engine: AsyncEngine,
    clients: AccountClients,
    rules: RulesFile | None,
    *,
    holder: str,
    every: timedelta,
    now: datetime,
    turn: timedelta = SYNC_TURN,
) -> list[SyncReport]:
    """Read in full each complete mirror never synced under its account's current mode, or last synced `every` ago
    or more, whose lease `holder` takes. A full read, not an incremental one: it is what sees the hand edits no
    webhook told us of. It goes on from where an unfinished read (begun less than `every` ago) stopped."""
    syncs = await all_syncs(engine)
    reports = []
    for name in complete_accounts(clients):
        mode, client = clients.modes.get(name), clients.client(name)
        if mode is None or client is None or client.dry_run or clients.problem(name) is not None:
            continue
        if not _due(syncs.get(name), mode, every, now):
            continue
        if not await leases.take(engine, duty(name), holder, turn=turn, now=now):
            continue  # another process reads it, or a failed read waits AFTER_FAILURE
        # Read again under the lease: another process may have just finished it and let the lease go.
        if not _due(await load_sync(engine, name), mode, every, now):
            await leases.release(engine, duty(name), holder, now=now)
            continue
        work = sync_account(engine, client, account=name, mode=mode, rules=rules, full=True, resume_within=every)
        try:
            report = await holding(engine, duty(name), holder, turn=turn, work=work)
        except LeaseLost:
            log.warning("mirror sync of account %s stopped: its lease went to another process", name)
            continue
        except ApiError as exc:
            # Meanwhile the mirror is used as it is (or, never synced, not trusted); what was read is kept.
            log.warning("mirror sync of account %s failed, to go on from where it stopped: %s", name, exc.message)
            await leases.release(engine, duty(name), holder, now=utcnow(), after=AFTER_FAILURE)
            continue
        await leases.release(engine, duty(name), holder, now=utcnow())
        log.info(
            "mirror of account %s synced: %d contacts read, %d requests",
            name,
            report.contacts_read,
            report.requests,
        )
        reports.append(report)
    return reports
