"""`systeme-flow connect --url URL` registers the Systeme.io webhooks the rules need; `webhooks list | delete ID`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from app.accounts.registry import AccountClients, accounts_of
from app.cli.run import confirm, fail, rules_or_exit, settings_or_exit
from app.rules.schema import DEFAULT_ACCOUNT, RulesFile
from app.systeme import setup
from app.systeme.client import SystemeSession
from app.systeme.errors import ApiError
from app.systeme.registration import Outcome, register, source_account, wanted_webhooks

T = TypeVar("T")


def _on_account(command: str, rules: RulesFile | None, name: str, work: Callable[[SystemeSession], Awaitable[T]]) -> T:
    """Run `work` with a session of the account `name` (its own key or Maton connection); errors end in one line."""
    settings = settings_or_exit()
    clients = AccountClients(settings, rules)
    if name not in clients.accounts:
        fail(f"{command}: no account {name!r} (accounts: {', '.join(clients.accounts)})")
    if (problem := clients.problem(name)) is not None:
        fail(f"{command}: {problem}")
    if clients.accounts[name].mode == "dry-run":
        fail(f"{command}: account {name!r} has no API key: set MATON_API_KEY or SYSTEME_API_KEY")

    async def run() -> T:
        client = clients.client(name)
        assert client is not None
        try:
            return await work(client.session())
        finally:
            await clients.aclose()

    try:
        return asyncio.run(run())
    except ApiError as exc:
        fail(f"{command}: account {name!r}: {exc.message}")


def _base_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        fail(f"connect: --url must be this service's address, like https://flow.example.com (got {value!r})")
    return value.strip().rstrip("/")


def _events(events: tuple[str, ...] | list[str]) -> str:
    return ", ".join(events) or "no events"


def _say(outcome: Outcome, account: str) -> list[str]:
    want, hook = outcome.wanted, outcome.webhook or {}
    ident, where = hook.get("id"), f"in account '{account}'"
    lines = {
        "created": [f"created webhook {ident} {where}: {_events(want.events)} -> {want.url}"],
        "updated": [
            f"updated webhook {ident} {where} ({', '.join(outcome.changes)}): {_events(want.events)} -> {want.url}"
            + (f" (was {_events(outcome.before)})" if "events" in outcome.changes else "")
        ],
        "unchanged": [f"unchanged: webhook {ident} {where} already sends {_events(want.events)} to {want.url}"],
        "replaced": [
            f"created webhook {ident} {where}: {_events(want.events)} -> {want.url}, replacing ours elsewhere"
        ],
        "refused": [
            f"refused: webhook {ident} {where} sends to {want.url} but is not one of ours (named "
            f"{hook.get('name')!r}): `connect --force` takes it over, `systeme-flow webhooks delete {ident}` removes it"
        ],
        "skipped": [
            f"skipped source '{want.source}': no enabled rule listens to it"
            + (
                f"; webhook {ident} still sends {_events(setup.events_of(hook))} to {want.url} "
                f"(`systeme-flow webhooks delete {ident}` removes it)"
                if ident
                else ", so nothing is registered"
            )
        ],
    }[outcome.action]
    lines += [f"deleted webhook {removed} {where} (one of ours per source)" for removed in outcome.removed]
    return lines


def cmd_connect(args: argparse.Namespace) -> None:
    settings = settings_or_exit()
    rules = rules_or_exit(settings.rules_file).file
    base = _base_url(args.url)
    if args.source is not None and getattr(rules.sources.get(args.source), "type", None) != "systeme":
        names = [n for n, s in rules.sources.items() if s.type == "systeme"]
        fail(f"connect: --source {args.source!r} is not a `systeme` source (they are: {', '.join(names) or 'none'})")
    account = args.account or (source_account(rules, args.source) if args.source else DEFAULT_ACCOUNT)
    if account not in (known := [DEFAULT_ACCOUNT, *rules.accounts]):
        fail(f"connect: no account {account!r} (accounts: {', '.join(known)})")
    complete = accounts_of(settings, rules)[account].mirror == "complete"
    wanted = wanted_webhooks(rules, base_url=base, account=account, source=args.source, mirror=complete)
    if not wanted:
        fail(
            f"connect: no `systeme` source sends events of account '{account}' "
            "(a source's `account:`, else the account its rules act on, else default)"
        )
    for want in wanted:
        for unknown in want.unknown:
            sys.stderr.write(
                f"systeme-flow connect: warning: {unknown} is not an event Systeme.io webhooks send "
                f"({', '.join(setup.EVENTS)})\n"
            )
    outcomes = _on_account("connect", rules, account, lambda api: register(api, wanted, force=args.force))
    refused = any(o.action == "refused" for o in outcomes)
    if args.json:
        print(json.dumps([_json(o, account) for o in outcomes], indent=2))
    else:
        for outcome in outcomes:
            print("\n".join(_say(outcome, account)))
        changed = sum(1 for o in outcomes if o.action in ("created", "updated", "replaced"))
        print("nothing changed" if not changed else f"{changed} webhook{'s' if changed > 1 else ''} changed")
    if refused:
        sys.exit(1)


def _json(outcome: Outcome, account: str) -> dict[str, Any]:
    hook = outcome.webhook or {}
    return {
        "account": account,
        "source": outcome.wanted.source,
        "action": outcome.action,
        "webhook_id": hook.get("id"),
        "url": outcome.wanted.url,
        "events": list(outcome.wanted.events),
        "changes": list(outcome.changes),
        "removed": [removed.split(" ", 1)[0] for removed in outcome.removed],
    }


def _accounts_file() -> RulesFile | None:
    path = settings_or_exit().rules_file
    return rules_or_exit(path, strict_env=False).file if Path(path).is_file() else None


def _subscriptions(hook: dict[str, Any]) -> str:
    shown = []
    for sub in [s for s in hook.get("subscriptions") or [] if isinstance(s, dict)]:
        disabled = f" (disabled: {sub.get('disabledReason')})" if sub.get("disabledAt") else ""
        shown.append(f"{sub.get('event')}{disabled}")
    return ", ".join(shown) or "no events"


def cmd_list(args: argparse.Namespace) -> None:
    hooks = _on_account("webhooks list", _accounts_file(), args.account, setup.webhooks)
    if args.json:
        print(json.dumps(hooks, indent=2))
        return
    if not hooks:
        print(f"no webhooks in account '{args.account}' (`systeme-flow connect --url https://YOUR-HOST` adds them)")
    for hook in hooks:
        state = "active" if hook.get("active", True) else "inactive"
        print(f"{hook.get('id')}  {state:<8}  {hook.get('url')}  {_subscriptions(hook)}  {hook.get('name', '')!r}")


def cmd_delete(args: argparse.Namespace) -> None:
    async def delete(api: SystemeSession) -> str:
        hook = await setup.webhook(api, args.id)
        if hook is None:
            return "missing"
        question = f"Delete webhook {args.id} ({hook.get('url')}: {_subscriptions(hook)}) in account '{args.account}'?"
        if not (args.yes or confirm(question)):
            return "kept"
        return "deleted" if await setup.delete_webhook(api, args.id) else "missing"

    outcome = _on_account("webhooks delete", _accounts_file(), args.account, delete)
    if outcome == "missing":
        fail(f"webhooks delete: no webhook {args.id} in account '{args.account}'")
    if outcome == "kept":
        print("not deleted")
        sys.exit(1)
    print(f"deleted webhook {args.id} in account '{args.account}'")


def add_commands(commands: Any) -> None:
    connect = commands.add_parser("connect", help="register (or update) the Systeme.io webhooks the rules listen to")
    connect.add_argument("--url", required=True, help="this service's public address, e.g. https://flow.example.com")
    connect.add_argument("--account", help="the account whose webhooks to register (default: default)")
    connect.add_argument("--source", help="only this `systeme` source")
    connect.add_argument("--json", action="store_true")
    connect.add_argument(
        "--force", action="store_true", help="take over a webhook at this service's URL that another tool registered"
    )
    connect.set_defaults(func=cmd_connect)

    webhooks = commands.add_parser("webhooks", help="the webhooks registered in a Systeme.io account")
    verbs = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listing = verbs.add_parser("list", help="every webhook of the account")
    listing.add_argument("--account", default=DEFAULT_ACCOUNT)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    delete = verbs.add_parser("delete", help="delete one webhook (asks first)")
    delete.add_argument("id")
    delete.add_argument("--account", default=DEFAULT_ACCOUNT)
    delete.add_argument("--yes", action="store_true", help="do not ask")
    delete.set_defaults(func=cmd_delete)
