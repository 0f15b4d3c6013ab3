"""`connect`: one Systeme.io webhook per `systeme` source, sending what its rules listen to, idempotently.

The webhook is found by its URL (`https://HOST/hooks/<source>`, which Systeme.io does not let a PATCH change).
Systeme.io never shows a webhook's secret again, so its name carries a fingerprint of the secret (an HMAC keyed
with it, not the secret): a changed secret in the rules file is noticed and sent, and an unchanged webhook is
left alone, so a second run writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from app.rules.schema import DEFAULT_ACCOUNT, RulesFile
from app.systeme import setup
from app.systeme.client import SystemeSession

_NAME = re.compile(r"^systeme-flow (?P<source>\S+) \[(?P<print>[0-9a-f]{8})\]$")


@dataclass(frozen=True)
class Wanted:
    """The webhook a `systeme` source needs: its URL, the events its rules listen to, its secret."""

    source: str
    url: str
    events: tuple[str, ...]
    secret: str
    # `on` types of its rules that no Systeme.io webhook sends, as "rule 'id': TYPE".
    unknown: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"systeme-flow {self.source} [{fingerprint(self.secret)}]"

    def body(self) -> dict[str, Any]:
        subscriptions = [{"event": e, "schemaVersion": setup.SCHEMA_VERSION} for e in self.events]
        return {"name": self.name, "url": self.url, "secret": self.secret, "subscriptions": subscriptions}


@dataclass(frozen=True)
class Outcome:
    action: Literal["created", "updated", "unchanged", "skipped"]
    wanted: Wanted
    webhook: dict[str, Any] | None = None
    changes: tuple[str, ...] = ()
    before: tuple[str, ...] = ()  # the events it sent before an update
    duplicates: tuple[str, ...] = field(default=())  # ids of other webhooks to the same URL


def fingerprint(secret: str) -> str:
    return hmac.new(secret.encode(), b"systeme-flow webhook", hashlib.sha256).hexdigest()[:8]


def source_account(rules: RulesFile, source: str) -> str:
    """The account a source's events come from: its `account:`, else the one all its rules act on, else default."""
    config = rules.sources[source]
    if config.account:
        return config.account
    named = {r.account for r in rules.rules if any(on.partition("/")[0] == source for on in r.on)}
    only = named.pop() if len(named) == 1 else None
    return only or DEFAULT_ACCOUNT


def _events(rules: RulesFile, source: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    events: set[str] = set()
    unknown: list[str] = []
    for rule in rules.rules:
        if not rule.enabled:
            continue
        for on in rule.on:
            name, _, pattern = on.partition("/")
            if name != source:
                continue
            matched = {e for e in setup.EVENTS if not pattern or fnmatchcase(e, pattern)}
            if not matched:
                unknown.append(f"rule '{rule.id}': {pattern}")
            events |= matched
    return tuple(e for e in setup.EVENTS if e in events), tuple(unknown)


def wanted_webhooks(rules: RulesFile, *, base_url: str, account: str, source: str | None = None) -> list[Wanted]:
    """What each `systeme` source of the account needs registered (with `source`, only that one)."""
    found = []
    for name, config in rules.sources.items():
        if config.type != "systeme" or (source is not None and name != source):
            continue
        if source is None and source_account(rules, name) != account:
            continue
        events, unknown = _events(rules, name)
        url = f"{base_url.rstrip('/')}/hooks/{name}"
        # The first secret: a list is a rotation, and the new secret goes first (both verify meanwhile).
        secret = next(s for s in config.secret if s.strip())  # the schema guarantees one
        found.append(Wanted(name, url, events, secret, unknown))
    return found


def _changes(hook: dict[str, Any], wanted: Wanted) -> tuple[dict[str, Any], list[str]]:
    changes: dict[str, Any] = {}
    said: list[str] = []
    if hook.get("name") != wanted.name:
        # Sent together: an unknown name says nothing about the secret it was registered with.
        changes.update(name=wanted.name, secret=wanted.secret)
        old = _NAME.match(str(hook.get("name") or ""))
        if old is None or old["print"] != fingerprint(wanted.secret):
            said.append("secret")
        if old is None or old["source"] != wanted.source:
            said.append("name")
    subs = [s for s in hook.get("subscriptions") or [] if isinstance(s, dict)]
    stale = any(s.get("disabledAt") or s.get("schemaVersion") != setup.SCHEMA_VERSION for s in subs)
    if tuple(setup.events_of(hook)) != wanted.events or stale:
        changes["subscriptions"] = wanted.body()["subscriptions"]
        said.append("events" if tuple(setup.events_of(hook)) != wanted.events else "subscriptions re-enabled")
    if hook.get("active") is False:
        changes["active"] = True
        said.append("re-activated")
    return changes, said


async def register(api: SystemeSession, wanted: list[Wanted]) -> list[Outcome]:
    """Create or update each wanted webhook; one list of the existing ones first, and no write when nothing changed."""
    existing = await setup.webhooks(api)
    outcomes = []
    for want in wanted:
        same = [h for h in existing if str(h.get("url") or "").rstrip("/") == want.url]
        others = tuple(str(h.get("id")) for h in same[1:])
        if not same:
            if not want.events:
                outcomes.append(Outcome("skipped", want))
                continue
            created = await setup.create_webhook(api, {**want.body(), "active": True})
            outcomes.append(Outcome("created", want, created))
            continue
        hook = same[0]
        if not want.events:
            outcomes.append(Outcome("skipped", want, hook, duplicates=others))
            continue
        changes, said = _changes(hook, want)
        if not changes:
            outcomes.append(Outcome("unchanged", want, hook, duplicates=others))
            continue
        updated = await setup.update_webhook(api, str(hook["id"]), changes)
        before = tuple(setup.events_of(hook))
        outcomes.append(Outcome("updated", want, updated, tuple(said), before, others))
    return outcomes
