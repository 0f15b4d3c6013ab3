"""`systeme-flow sync`: fill an account's contact mirror (app/mirror/), or `--status`: each account's mirror."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from app.accounts.registry import AccountClients
from app.cli.run import database_errors, fail, rules_or_exit, settings_or_exit
from app.mirror.service import SyncRefused, chosen, mirror_status, sync_accounts
from app.store.db import create_engine
from app.store.models import utcnow
from app.systeme.errors import ApiError


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = settings_or_exit()
    # The rules in force say which courses and communities to read; their env need not be complete here.
    rules = rules_or_exit(settings.rules_file, strict_env=False).file
    engine = create_engine(settings.database_url)
    clients = AccountClients(settings, rules)
    try:
        if args.status:
            now = utcnow()
            found = await mirror_status(engine, clients)
            if not args.json:
                print("\n".join(line for status in found for line in status.lines(now)))
            return [
                {
                    "account": s.account,
                    "mirror": s.mirror,
                    "trusted": s.trusted,
                    "contacts_known": s.known,
                    "synced_at": s.synced.synced_at.isoformat() if s.synced else None,
                    "full_at": s.synced.full_at.isoformat() if s.synced else None,
                    "age_seconds": (now - s.synced.synced_at).total_seconds() if s.synced else None,
                    "misses": s.synced.misses if s.synced else 0,
                }
                for s in found
            ]
        reports = await sync_accounts(engine, clients, rules, chosen(clients, args.account), full=args.full)
        if not args.json:
            print("\n".join(line for report in reports for line in report.lines()))
        return [report.to_json() for report in reports]
    finally:
        await clients.aclose()
        await engine.dispose()


def cmd_sync(args: argparse.Namespace) -> None:
    settings = settings_or_exit()
    with database_errors("sync", settings):
        try:
            output = asyncio.run(_run(args))
        except SyncRefused as exc:
            fail(f"sync: {exc}")
        except ApiError as exc:
            fail(f"sync: Systeme.io refused a read, nothing was recorded: {exc.message}")
    if args.json:
        print(json.dumps(output, indent=2))
    sys.stdout.flush()


def add_commands(commands: Any) -> None:
    sync = commands.add_parser(
        "sync", help="read an account's contacts, tags, enrollments and memberships into the mirror; --status"
    )
    sync.add_argument(
        "--account", help="the account to sync (default: every account with a complete mirror, else `default`)"
    )
    sync.add_argument("--status", action="store_true", help="per account: mirror mode, last sync, its age, misses")
    sync.add_argument("--full", action="store_true", help="read everything again, not only what is new")
    sync.add_argument("--json", action="store_true", help="machine-readable output")
    sync.set_defaults(func=cmd_sync)
