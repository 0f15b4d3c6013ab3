"""`connect`: one Systeme.io webhook per `systeme` source, sending what its rules listen to, idempotently.

A webhook is ours when its name is `systeme-flow <source> [<fingerprint>]`, or when the operator says so
(`--force`) of one at the source's URL (`https://HOST/hooks/<source>`). Systeme.io never shows a webhook's secret
again, so the name carries a fingerprint of the secret (an HMAC keyed with it, not the secret): a changed secret in
the rules file is noticed and sent, and an unchanged webhook is left alone, so a second run writes nothing.

Names and URLs are unique in an account (a second one is a 422 "This value is already used"), and a PATCH cannot
change a URL. So after moving hosts (a tunnel, then production) ours at the old URL is replaced: it gives up its
name first (renamed `... (replaced)`, still ours), the new one is created, then the old one deleted, so events keep
flowing to one of them throughout and no run ever leaves two. One at our URL that is not ours is never touched
without `--force`: it is reported instead (Systeme.io would refuse a second webhook at that URL anyway).
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

_NAME = re.compile(r"^systeme-flow (?P<source>\S+) \[(?P<print>[0-9a-f]{8})\]( \(replaced\))?$")
REPLACED = " (replaced)"


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
    action: Literal["created", "updated", "unchanged", "skipped", "replaced", "refused"]
    wanted: Wanted
    # The webhook kept or made; for "refused", the one at our URL that is not ours.
    webhook: dict[str, Any] | None = None
    changes: tuple[str, ...] = ()
    before: tuple[str, ...] = ()  # the events it sent before an update
    # Webhooks of ours deleted so that one is left: the one at the old URL, duplicates (as "id url").
    removed: tuple[str, ...] = field(default=())


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


# What a complete contact mirror needs to hear of, whatever the rules listen to (app/mirror/events.py).
MIRROR_EVENTS = ("CONTACT_CREATED", "CONTACT_TAG_ADDED", "CONTACT_TAG_REMOVED")


def wanted_webhooks(
    rules: RulesFile, *, base_url: str, account: str, source: str | None = None, mirror: bool = False
) -> list[Wanted]:
    """What each `systeme` source of the account needs registered (with `source`, only that one); `mirror`: the
    account's contact mirror is complete, and the contact and tag events keep it current."""
    found = []
    for name, config in rules.sources.items():
        if config.type != "systeme" or (source is not None and name != source):
            continue
        if source is None and source_account(rules, name) != account:
            continue
        events, unknown = _events(rules, name)
        if mirror:
            events = tuple(e for e in setup.EVENTS if e in events or e in MIRROR_EVENTS)
        url = f"{base_url.rstrip('/')}/hooks/{name}"
        # The first secret: a list is a rotation, and the new secret goes first (both verify meanwhile).
        secret = next(s for s in config.secret if s.strip())  # the schema guarantees one
        found.append(Wanted(name, url, events, secret, unknown))
    return found


def _url(hook: dict[str, Any]) -> str:
    return str(hook.get("url") or "").rstrip("/")


def is_ours(hook: dict[str, Any], source: str) -> bool:
    found = _NAME.match(str(hook.get("name") or ""))
    return found is not None and found["source"] == source


def _changes(hook: dict[str, Any], wanted: Wanted) -> tuple[dict[str, Any], list[str]]:
    changes: dict[str, Any] = {}
    said: list[str] = []
    if hook.get("name") != wanted.name:
        # Sent together: an unknown name says nothing about the secret it was registered with.
        changes.update(name=wanted.name, secret=wanted.secret)
        old = _NAME.match(str(hook.get("name") or ""))
        if old is None or old["print"] != fingerprint(wanted.secret):
            said.append("secret")
        if old is None or old["source"] != wanted.source or not said:
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


async def _delete(api: SystemeSession, hooks: list[dict[str, Any]]) -> tuple[str, ...]:
    for hook in hooks:
        await setup.delete_webhook(api, str(hook["id"]))
    return tuple(f"{hook['id']} {_url(hook)}" for hook in hooks)


async def _one(api: SystemeSession, want: Wanted, existing: list[dict[str, Any]], force: bool) -> Outcome:
    at_url = [h for h in existing if _url(h) == want.url]
    strangers = [h for h in at_url if not is_ours(h, want.source)]
    if strangers and not force:
        return Outcome("refused", want, strangers[0])
    # Ours: the ones at our URL first (the one to keep), then ours elsewhere (an old host).
    ours = at_url + [h for h in existing if is_ours(h, want.source) and h not in at_url]
    if not want.events:
        return Outcome("skipped", want, ours[0] if ours else None)
    if not ours:
        return Outcome("created", want, await setup.create_webhook(api, {**want.body(), "active": True}))
    keep, others = (ours[0], ours[1:]) if at_url else (None, ours)
    if keep is None:
        # Moving hosts: the old one gives its name up, so the new one can take it, and goes once that exists.
        for old in others:
            if old.get("name") == want.name:
                await setup.update_webhook(api, str(old["id"]), {"name": want.name + REPLACED})
        created = await setup.create_webhook(api, {**want.body(), "active": True})
        return Outcome("replaced", want, created, removed=await _delete(api, others))
    # The others go first: one of them may hold the name the kept one is given.
    removed = await _delete(api, others)
    changes, said = _changes(keep, want)
    if not changes:
        return Outcome("unchanged", want, keep, removed=removed)
    updated = await setup.update_webhook(api, str(keep["id"]), changes)
    return Outcome("updated", want, updated, tuple(said), tuple(setup.events_of(keep)), removed)


async def register(api: SystemeSession, wanted: list[Wanted], *, force: bool = False) -> list[Outcome]:
    """Create, update or replace each wanted webhook so that exactly one of ours sends to its URL; one list of the
    existing ones first, and no write when nothing changed. `force` takes over one at our URL that is not ours."""
    existing = await setup.webhooks(api)
    return [await _one(api, want, existing, force) for want in wanted]
