"""Syncing accounts from a command or the service, and what `sync --status` shows of each account's mirror."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import describe
from app.accounts.registry import AccountClients
from app.mirror.duty import SYNC_TURN, duty, holding
from app.mirror.report import SyncReport
from app.mirror.sync import sync_account
from app.rules.schema import DEFAULT_ACCOUNT, RulesFile
from app.store import leases
from app.store.leases import new_holder
from app.store.mirror import SyncRecord, all_syncs, known_count
from app.store.models import utcnow
from app.store.modes import note_modes, recorded_modes
from app.text import counted


class SyncRefused(Exception):
    """The account cannot be synced as configured here; the message says why and what to do."""


def complete_accounts(clients: AccountClients) -> list[str]:
    """The accounts whose mirror is chosen complete, in name order."""
    return sorted(name for name, account in clients.accounts.items() if account.mirror == "complete")


def chosen(clients: AccountClients, account: str | None) -> list[str]:
    """`--account NAME`, or every account with a complete mirror, or the default account when none has one."""
    if account is not None:
        if account not in clients.accounts:
            raise SyncRefused(f"no account {account!r}: the accounts are {', '.join(sorted(clients.accounts))}")
        return [account]
    return complete_accounts(clients) or [DEFAULT_ACCOUNT]


async def sync_accounts(
    engine: AsyncEngine,
    clients: AccountClients,
    rules: RulesFile | None,
    names: Sequence[str],
    *,
    full: bool = False,
    now: datetime | None = None,
) -> list[SyncReport]:
    """Sync each named account, after checking every one can be: a usable account (not a dry run), and configured
    here as the service last ran it, since the mirror's entries are trusted only under the mode they were read in."""
    recorded = await recorded_modes(engine)
    for name in names:
        mode, client = clients.modes.get(name), clients.client(name)
        if client is None or mode is None:
            raise SyncRefused(clients.problem(name) or f"account {name!r} cannot be used as configured")
        if client.dry_run:
            raise SyncRefused(f"account {name!r} is a dry run (no MATON_API_KEY or SYSTEME_API_KEY): nothing to read")
        if recorded.get(name, mode) != mode:
            raise SyncRefused(
                f"account {name!r} last ran as {describe(recorded[name])}, and is configured here as "
                f"{describe(mode)}: run the sync with the service's configuration (its mirror belongs to that mode)"
            )
    # An account never run before gets its mode recorded now, so the service starting under it keeps the mirror.
    await note_modes(engine, {name: clients.modes[name] for name in names}, now=now or utcnow())
    reports = []
    holder = new_holder()
    for name in names:
        client = clients.client(name)
        assert client is not None
        mode = clients.modes[name]
        assert mode is not None
        # The service's lease: a read beside the service's own would write the same progress.
        # The operator asks now: a service sync paused after a failure does not make them wait for its retry.
        if not await leases.take(engine, duty(name), holder, turn=SYNC_TURN, now=utcnow(), over_pause=True):
            raise SyncRefused(
                f"account {name!r} is being synced by the service now: see `sync --status` once it is done"
            )
        try:
            work = sync_account(engine, client, account=name, mode=mode, rules=rules, full=full)
            reports.append(await holding(engine, duty(name), holder, turn=SYNC_TURN, work=work))
        finally:
            await leases.release(engine, duty(name), holder, now=utcnow())
    return reports


@dataclass(frozen=True)
class MirrorStatus:
    account: str
    mirror: str  # "learning" or "complete", as configured
    mode: str | None  # the account's mode now
    synced: SyncRecord | None
    known: int  # entries in the mirror

    @property
    def trusted(self) -> bool:
        """A complete mirror decides (no lookup for an unknown email) only once synced under the current mode."""
        return self.mirror == "complete" and self.synced is not None and self.synced.mode == self.mode

    def lines(self, now: datetime) -> list[str]:
        out = [f"account {self.account}: mirror {self.mirror}, {counted(self.known, 'contact')} known"]
        if self.synced is None:
            out.append("  last sync: never" + (" (the service syncs it at start)" if self.mirror == "complete" else ""))
            return out
        age = _age((now - self.synced.synced_at).total_seconds())
        out.append(
            f"  last sync: {self.synced.synced_at:%Y-%m-%d %H:%M:%S} UTC ({age} ago), {self.synced.requests} requests"
        )
        out.append(f"  last full read: {self.synced.full_at:%Y-%m-%d %H:%M:%S} UTC")
        if self.synced.mode != self.mode:
            out.append(
                f"  synced under {describe(self.synced.mode)}, not the current {describe(self.mode)}: not trusted"
            )
        out.append(f"  misses: {self.synced.misses} (contacts created behind the mirror's back, found on create)")
        return out


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


async def mirror_status(engine: AsyncEngine, clients: AccountClients) -> list[MirrorStatus]:
    syncs = await all_syncs(engine)
    return [
        MirrorStatus(name, account.mirror, clients.modes.get(name), syncs.get(name), await known_count(engine, name))
        for name, account in sorted(clients.accounts.items())
    ]
