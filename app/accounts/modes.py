"""Account modes: each stored event and action belongs to the mode it arrived under, so test work never runs live.

A mode is one of
- `dry-run`: no API key, nothing is sent;
- `simulator:<account>:<hash>`: an API URL on this machine (loopback), which is where `systeme-flow simulator` runs;
- `live:<account>:<hash>`: any other API URL.
The hash is the first 8 hex digits of SHA-256 over the API URL and the credential that picks the Systeme.io account
(the API key, or the Maton connection): a fingerprint that tells two accounts apart, never the key itself. Loopback
is the test of "the simulator" because it needs no request and is decided the same way in every process; a
simulator reached through another host name counts as live, which errs on the side of running nothing twice.

Work of one mode is never executed under another (app/store/actions.py filters on `runnable`): it waits, listed
at start and on the dashboard, until `systeme-flow discard --test-data` removes it or a replay plans its event again
under the account now configured.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from app.accounts.registry import Account

DRY_RUN = "dry-run"
TEST_KINDS = ("dry-run", "simulator")
# account name -> the mode its work is stored and run under now; None when it cannot run as configured (held).
Modes = Mapping[str, str | None]


def on_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fingerprint(account: Account) -> str | None:
    """The mode of an account as configured; None when it cannot be used (its actions are held, not moded)."""
    if account.problem is not None:
        return None
    if account.mode == "dry-run":
        return DRY_RUN
    if account.connection:
        credential = f"connection={account.connection}"
    else:
        credential = "\n".join(f"{k}={v}" for k, v in sorted(account.headers.items()))
    digest = hashlib.sha256(f"{account.base_url}\n{credential}".encode()).hexdigest()[:8]
    kind = "simulator" if on_loopback(account.base_url) else "live"
    return f"{kind}:{account.name}:{digest}"


def current_modes(accounts: Mapping[str, Account]) -> dict[str, str | None]:
    return {name: fingerprint(account) for name, account in accounts.items()}


def kind_of(mode: str) -> str:
    """ "dry-run", "simulator" or "live"."""
    return mode.split(":", 1)[0]


def is_test(mode: str | None) -> bool:
    return mode is not None and kind_of(mode) in TEST_KINDS


def describe(mode: str | None) -> str:
    """For people: "a dry run", "the simulator (account default, a1b2c3d4)", "live account default (a1b2c3d4)"."""
    if mode is None:
        return "an account that cannot be used as configured"
    if mode == DRY_RUN:
        return "a dry run"
    kind, _, rest = mode.partition(":")
    account, _, digest = rest.rpartition(":")
    if kind == "simulator":
        return f"the simulator (account {account}, {digest})"
    return f"live account {account} ({digest})"


def refusal(action_id: str, mode: str, account: str, modes: Modes) -> str:
    """Why an action of another mode will not run here (the 409 of run-now and retry)."""
    now = describe(modes.get(account))
    return (
        f"action {action_id} was planned under {describe(mode)}, and account '{account}' is now {now}: it never "
        "runs under another mode. Replay its event to plan it again under this account, or remove what is left of "
        "test runs with `systeme-flow discard --test-data`"
    )
