"""`systeme-flow connections list | create | get ID | delete ID`: the Maton connections to Systeme.io accounts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from app.cli.run import confirm, fail, settings_or_exit
from app.config import Settings, rules_environment
from app.errors import RulesError
from app.maton import service
from app.maton.client import Connection, MatonClient, MatonError
from app.rules.loader import load_rules

T = TypeVar("T")


def _run(command: str, work: Callable[[MatonClient], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    if settings.maton_api_key is None:
        fail(f"connections {command}: needs MATON_API_KEY (connections belong to your Maton account)")

    async def run() -> T:
        async with MatonClient.from_settings(settings) as client:
            return await work(client)

    try:
        return asyncio.run(run())
    except MatonError as exc:
        fail(f"connections {command}: {exc.message}")


def _line(connection: Connection) -> str:
    created = f"created {connection.created}" if connection.created else ""
    line = f"{connection.id}  {connection.status:<7}  {created}".rstrip()
    return line + (f"\n    to finish connecting it, open {connection.url}" if connection.status == "PENDING" else "")


def _users(settings: Settings, connection_id: str) -> list[str]:
    """The accounts that name this connection (the settings' and the rules file's), to warn before a delete."""
    users = ["default"] if settings.maton_connection == connection_id else []
    if Path(settings.rules_file).is_file():
        try:
            accounts = load_rules(settings.rules_file, rules_environment(), strict_env=False).file.accounts
        except RulesError:
            accounts = {}  # a broken rules file is `check`'s business, not a reason to refuse a delete
        users += [name for name, config in accounts.items() if config.connection == connection_id]
    return users


def cmd_list(args: argparse.Namespace) -> None:
    status = None if args.status == "all" else args.status
    found = _run("list", lambda client: service.list_connections(client, status=status))
    if args.json:
        print(json.dumps([c.to_json() for c in found], indent=2))
    elif not found:
        which = "" if status is None else f"{status} "
        print(f"no {which}Systeme.io connections in this Maton account (`systeme-flow connections create` adds one)")
    for connection in [] if args.json else found:
        print(_line(connection))


def cmd_create(args: argparse.Namespace) -> None:
    created = _run("create", service.create_connection)
    if args.json:
        print(json.dumps(created.to_json(), indent=2))
        return
    print(f"created connection {created.id} ({created.status})")
    if created.url:
        print(f"open this URL in a browser and authorise your Systeme.io account:\n  {created.url}")
    use = f"MATON_CONNECTION={created.id} in .env, or `NAME: {{ connection: {created.id} }}` under `accounts:`"
    print(f"once `systeme-flow connections get {created.id}` says ACTIVE, use it: {use} in the rules file")


def cmd_get(args: argparse.Namespace) -> None:
    found = _run("get", lambda client: service.find_connection(client, args.id))
    if found is None:
        fail(f"connections get: no connection {args.id} in this Maton account")
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
        return
    for key, value in found.to_json().items():
        if value is not None:
            print(f"{key}: {value}")


def cmd_delete(args: argparse.Namespace) -> None:
    settings = settings_or_exit()

    async def delete(client: MatonClient) -> Connection | None:
        found = await service.find_connection(client, args.id)
        if found is None:
            return None
        users = _users(settings, found.id)
        used = f"; account {', '.join(repr(u) for u in users)} uses it and will stop working" if users else ""
        question = f"Delete Maton connection {found.id} ({found.app}, {found.status}){used}?"
        if not (args.yes or confirm(question)):
            return found
        await service.delete_connection(client, found.id)
        return Connection(found.id, "DELETED", found.app)

    outcome = _run("delete", delete)
    if outcome is None:
        fail(f"connections delete: no connection {args.id} in this Maton account")
    if outcome.status != "DELETED":
        print("not deleted")
        sys.exit(1)
    print(f"deleted connection {outcome.id}")


def add_commands(commands: Any) -> None:
    connections = commands.add_parser("connections", help="the Maton connections to Systeme.io accounts")
    verbs = connections.add_subparsers(dest="connections_command", required=True)
    listing = verbs.add_parser("list", help="the Systeme.io connections of your Maton account")
    listing.add_argument("--status", default="ACTIVE", choices=[*service.STATUSES, "all"], help="default: ACTIVE")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    create = verbs.add_parser("create", help="start a new connection; prints the URL to open to authorise it")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_create)
    get = verbs.add_parser("get", help="one connection: its status, and its URL while PENDING")
    get.add_argument("id")
    get.add_argument("--json", action="store_true")
    get.set_defaults(func=cmd_get)
    delete = verbs.add_parser("delete", help="delete a connection (asks first)")
    delete.add_argument("id")
    delete.add_argument("--yes", action="store_true", help="do not ask")
    delete.set_defaults(func=cmd_delete)
