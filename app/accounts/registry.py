"""Systeme.io accounts: the settings' own (`default`) and those named under `accounts:` in the rules file.

Each account gets its own client: its base URL and credentials, its own quota budget and name cache (shared with
the other workers through Redis when configured), and its own hold (app/accounts/holds.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

from redis.asyncio import Redis

from app.accounts.modes import current_modes
from app.config import MATON_URL, SYSTEME_URL, Settings
from app.rules.current import RulesInForce
from app.rules.schema import DEFAULT_ACCOUNT, AccountConfig, RulesFile
from app.systeme.client import SystemeClient
from app.systeme.names import MemoryNames, NameCache, RedisNames
from app.systeme.quota import MemoryQuota, Quota, RedisQuota, SecondCounter, account_key, rate_key

log = logging.getLogger(__name__)
Mode = Literal["maton", "direct", "dry-run"]


@dataclass(frozen=True)
class Account:
    name: str
    mode: Mode
    base_url: str
    headers: dict[str, str]
    connection: str | None = None
    # Why it cannot be used as configured (e.g. a Maton connection without MATON_API_KEY); it is held with this.
    problem: str | None = None
    # The contact mirror: "learning" or "complete" (app/mirror/).
    mirror: str = "learning"

    def describe(self) -> str:
        """For logs and `serve`: the mode and connection, never a key."""
        if self.mode == "dry-run":
            return "dry run (no API key: nothing is sent)"
        where = f"Maton proxy ({self.base_url})" if self.mode == "maton" else f"direct ({self.base_url})"
        return where + (f", connection {self.connection}" if self.connection else "")


def _named(name: str, config: AccountConfig, settings: Settings) -> Account:
    mirror = config.mirror or (settings.mirror_mode if name == DEFAULT_ACCOUNT else "learning")
    return replace(_reached(name, config, settings), mirror=mirror)


def _reached(name: str, config: AccountConfig, settings: Settings) -> Account:
    if config.connection:
        if settings.maton_api_key is None:
            problem = f"account '{name}' uses a Maton connection, but MATON_API_KEY is not set"
            return Account(name, "dry-run", MATON_URL, {}, config.connection, problem)
        headers = {"Authorization": f"Bearer {settings.maton_api_key.get_secret_value()}"}
        headers["Maton-Connection"] = config.connection
        base = (settings.systeme_api_url or MATON_URL).rstrip("/")
        return Account(name, "maton", base, headers, config.connection)
    base = (config.api_url or settings.systeme_api_url or SYSTEME_URL).rstrip("/")
    return Account(name, "direct", base, {"X-API-Key": config.api_key or ""})


def accounts_of(settings: Settings, rules: RulesFile | None) -> dict[str, Account]:
    """Every account by name; `default` is the settings' unless the rules file defines its own."""
    found = {
        DEFAULT_ACCOUNT: Account(
            DEFAULT_ACCOUNT,
            settings.api_mode,
            settings.api_base_url,
            settings.api_headers,
            settings.maton_connection,
            mirror=settings.mirror_mode,
        )
    }
    for name, config in (rules.accounts if rules is not None else {}).items():
        found[name] = _named(name, config, settings)
    return found


class AccountClients:
    """One SystemeClient per account, built on first use and rebuilt when the account's configuration changes."""

    def __init__(self, settings: Settings, rules: RulesFile | None, *, redis: Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.accounts = accounts_of(settings, rules)
        # Each account's mode (app/accounts/modes.py), read on every delivery: worked out when the accounts change.
        self.modes = current_modes(self.accounts)
        self._clients: dict[str, tuple[Account, SystemeClient]] = {}
        self._retired: list[SystemeClient] = []
        # In-process per-second counters by `rate_key`: the connections of one Maton key share its 10 requests/s.
        self._seconds: dict[str, SecondCounter] = {}

    def update(self, rules: RulesFile | None) -> None:
        """The rules file changed: new accounts appear, changed ones get a new client on their next use."""
        self.accounts = accounts_of(self.settings, rules)
        self.modes = current_modes(self.accounts)

    def problem(self, name: str) -> str | None:
        """Why the account cannot be used as configured, or None."""
        account = self.accounts.get(name)
        if account is None:
            return f"account '{name}' is not configured: add it under `accounts:` in the rules file"
        return account.problem

    def client(self, name: str) -> SystemeClient | None:
        """The account's client; None for a name no longer configured."""
        account = self.accounts.get(name)
        if account is None:
            return None
        current = self._clients.get(name)
        if current is not None and current[0] == account:
            return current[1]
        if current is not None:
            self._retired.append(current[1])  # a run may still use it; closed with the others
        client = self._build(account)
        self._clients[name] = (account, client)
        return client

    def _build(self, account: Account) -> SystemeClient:
        key = account_key(account.base_url, account.headers)
        per_second = self.settings.api_max_rps if self.settings.api_max_rps is not None else 0
        if account.mode == "maton" and self.settings.api_max_rps is None:
            per_second = 10  # the Maton proxy's own limit, per account
        quota: Quota
        names: NameCache
        # The window is the Systeme.io account's (one per connection); the per-second cap is the Maton key's.
        second = rate_key(account.base_url, account.headers)
        if self.redis is not None:
            quota = RedisQuota(self.redis, per_second=per_second, key=key, second_key=second)
            names = RedisNames(self.redis, account=key.rsplit(":", 1)[-1])
        else:
            counter = self._seconds.setdefault(second, SecondCounter())
            quota, names = MemoryQuota(per_second=per_second, second=counter), MemoryNames()
        return SystemeClient(
            base_url=account.base_url,
            headers=account.headers,
            timeout=self.settings.http_timeout_seconds,
            quota=quota,
            names=names,
            dry_run=account.mode == "dry-run" and account.problem is None,
            account=account.name,
            maton=account.mode == "maton",
        )

    async def aclose(self) -> None:
        for _, client in self._clients.values():
            await client.aclose()
        for client in self._retired:
            await client.aclose()
        self._clients, self._retired = {}, []


def accounts_file(settings: Settings) -> RulesFile | None:
    """The rules file, for its `accounts:` (a command that runs planned actions needs only those); None if it
    cannot be read (logged: only the default account is known)."""
    rules = RulesInForce(settings.rules_file)
    rules.load()
    return rules.file
