"""An account Systeme.io refuses (a revoked key, no Maton connection, an expired authorisation) is held, not failed.

Its actions wait as they are, unclaimed; one probe request (a cheap GET) at a growing interval finds when it is
usable again, and everything resumes by itself. A hold starts and ends with a log line and one alert each.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.registry import Account, AccountClients
from app.config import Settings
from app.maton.client import MatonError
from app.maton.service import unnamed_connection_problem
from app.pipeline import alerts
from app.store import holds as store
from app.store.models import utcnow
from app.store.statuses import Priority
from app.systeme.client import SystemeClient
from app.systeme.errors import AccountUnusable, ApiError, Forbidden

log = logging.getLogger(__name__)


def key_to_fix(account: str, *, maton: bool | None = None) -> str:
    """The setting to change when an account refuses us: the settings' key for `default`, else the rules file's."""
    if account != "default":
        return f"the `api_key` or `connection` of account '{account}' under `accounts:` in the rules file"
    if maton is None:
        return "SYSTEME_API_KEY (or MATON_API_KEY and its connection)"
    return "MATON_API_KEY (or MATON_CONNECTION)" if maton else "SYSTEME_API_KEY"


async def on_held(engine: AsyncEngine, settings: Settings, account: str, reason: str) -> None:
    """The account refused a request: hold it (once), say so in the log and in one alert."""
    now = utcnow()
    if not await store.hold(engine, account, reason, now=now):
        return
    log.error(
        "account %s is on hold: %s. Its actions wait; it is probed every 30 s at first and resumes once a probe "
        "passes (a refused key only after SYSTEME_API_KEY, MATON_API_KEY or the Maton connection is fixed)",
        account,
        reason,
        extra={"account": account},
    )
    text = (
        f"Systeme.io account '{account}' is held: {reason}. Its actions wait, and resume once a probe passes: "
        "a refused key only after SYSTEME_API_KEY, MATON_API_KEY or the account's Maton connection is fixed."
    )
    await alerts.send(engine, settings, kind=f"held:{account}:{now:%Y%m%dT%H%M%S}", text=text, now=now)


async def _resumed(engine: AsyncEngine, settings: Settings, account: str) -> None:
    ended = await store.release(engine, account)
    if ended is None:
        return
    now = utcnow()
    minutes = (now - ended.since).total_seconds() / 60
    log.warning("account %s resumed after %.0f min on hold", account, minutes, extra={"account": account})
    text = f"Systeme.io account '{account}' works again after {minutes:.0f} min on hold; its actions resume."
    await alerts.send(engine, settings, kind=f"resumed:{account}:{ended.since:%Y%m%dT%H%M%S}", text=text, now=now)


async def ambiguous_connection(account: Account, settings: Settings) -> str | None:
    """Why a Maton account naming no connection cannot be used (its key has several ACTIVE ones), or None; a Maton
    that cannot answer is not a reason to hold (the key check tells whether requests go through)."""
    if account.mode != "maton" or account.connection or settings.maton_api_key is None:
        return None
    try:
        return await unnamed_connection_problem(settings)
    except MatonError as exc:
        log.warning("Maton's connections of account %s could not be listed: %s", account.name, exc.message)
        return None


async def probe(client: SystemeClient) -> tuple[bool, str]:
    """One cheap read: (usable, why not)."""
    try:
        # A probe of a held account is the service's own traffic: it never takes a buyer's share of the quota.
        await client.session(priority=Priority.LOW).request("GET", "/api/tags", params={"limit": 10})
    except AccountUnusable as exc:
        return False, exc.message
    except ApiError as exc:
        # The API is down or slow: not proof the account works; the next probe will tell.
        return False, exc.message
    return True, ""


async def probe_holds(engine: AsyncEngine, clients: AccountClients, settings: Settings) -> list[str]:
    """Probe the held accounts whose probe is due (one worker each); the accounts that resumed."""
    resumed = []
    now = utcnow()
    for held in await store.holds(engine):
        if held.next_probe_at > now or not await store.take_probe(engine, held.account, now=now):
            continue
        client = clients.client(held.account)
        if client is None or clients.problem(held.account):
            continue  # a configuration problem: fixed by editing the rules or settings, which reloads
        # Requests would go through while the key has several connections, to whichever Maton picks: still held.
        ambiguous = await ambiguous_connection(clients.accounts[held.account], settings)
        usable, why = (False, ambiguous) if ambiguous else await probe(client)
        if usable:
            await _resumed(engine, settings, held.account)
            resumed.append(held.account)
        else:
            log.info("account %s still held: %s", held.account, why, extra={"account": held.account})
    return resumed


async def check_accounts(engine: AsyncEngine, clients: AccountClients, settings: Settings) -> None:
    """At start: say which account mode and connection each account uses, and check each key once (one GET).

    A refused key starts the service with the account held, not crashed; a working one ends an earlier hold.
    """
    for name, account in clients.accounts.items():
        log.info("account %s: %s", name, account.describe(), extra={"account": name})
        try:
            await _check(engine, clients, settings, name)
        except Exception as exc:
            # Never a reason not to start: ingest must go on storing events (the store may be down too).
            log.warning("account %s could not be checked at start: %s", name, exc, extra={"account": name})


async def _check(engine: AsyncEngine, clients: AccountClients, settings: Settings, name: str) -> None:
    problem = clients.problem(name)
    if problem is not None:
        await on_held(engine, settings, name, problem)
        return
    client = clients.client(name)
    if client is None or client.dry_run:
        return
    if (ambiguous := await ambiguous_connection(clients.accounts[name], settings)) is not None:
        await on_held(engine, settings, name, ambiguous)
        return
    try:
        await client.session().request("GET", "/api/tags", params={"limit": 10})
    except (AccountUnusable, Forbidden) as exc:  # the probe itself refused: the account, not one record
        await on_held(engine, settings, name, exc.message)
    except ApiError as exc:
        log.warning("account %s could not be checked at start: %s", name, exc.message, extra={"account": name})
    else:
        await _resumed(engine, settings, name)
