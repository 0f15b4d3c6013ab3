"""`systeme-flow payments`: every payment since a date, its buyer, amount and whether access was given."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli.operator import run_job
from app.cli.run import rules_or_exit, settings_or_exit, since_arg
from app.config import Settings
from app.payments.handled import mark_handled
from app.payments.service import STATUSES, list_payments
from app.pipeline.dispatch import Dispatcher
from app.store.models import utcnow
from app.text import escape_values
from app.timeparse import parse_since

COLUMNS = ("event_id", "received_at", "source", "email", "product", "amount", "currency", "status", "access_seconds")


def _line(p: dict[str, Any]) -> str:
    price = f"{p['amount'] or '?'} {p['currency'] or ''}".strip()
    took = f"  access in {p['access_seconds']:.0f}s" if p["access_seconds"] is not None else ""
    reason = f"  {p['reason']}" if p["reason"] else ""
    if p.get("handled"):
        h = p["handled"]
        reason += f"  (handled by {h['by']} at {h['at'][:19]}: {h['reason']})"
    who = f"{p['email'] or '-'}  {p['product'] or '-'}"
    return f"{p['event_id']}  {p['received_at'][:19]}  {p['status']:<9} {who}  {price}{took}{reason}"


def cmd_payments(args: argparse.Namespace) -> None:
    sources = rules_or_exit(settings_or_exit().rules_file, strict_env=False).file.sources

    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        deadline = timedelta(minutes=settings.access_deadline_minutes)
        found = await list_payments(
            engine,
            sources,
            now=utcnow(),
            deadline=deadline,
            since=args.since,
            status=args.status,
            source=args.source,
            product=args.product,
        )
        return [item.as_dict() for item in found]

    items = run_job(job, args.command)
    if args.json:
        print(json.dumps({"items": items}, indent=2, default=str))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(items)
    elif not items:
        print("no payments" + (f" with status {args.status}" if args.status else "") + " in that period")
    else:
        for item in items:
            print(_line(item))


def cmd_handle(args: argparse.Namespace) -> None:
    sources = rules_or_exit(settings_or_exit().rules_file, strict_env=False).file.sources

    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        deadline = timedelta(minutes=settings.access_deadline_minutes)
        return await mark_handled(
            engine, sources, args.event_id, by=args.by, reason=args.reason, now=utcnow(), deadline=deadline
        )

    item = run_job(job, "payments handle")
    print(json.dumps(item, indent=2, default=str) if args.json else _line(escape_values(item)))


def add_commands(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "payments", help="list payments: buyer, product, amount, and whether access was given"
    )
    parser.add_argument("--since", type=since_arg, default=parse_since("30d"), help="30d (default), 12h or a date")
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--source")
    parser.add_argument("--product")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--csv", action="store_true", help="CSV for a spreadsheet")
    parser.set_defaults(func=cmd_payments)
    more = parser.add_subparsers(dest="payments_command", metavar="{handle}")
    handle = more.add_parser("handle", help="mark an unserved payment handled, with the reason (it stops alerting)")
    handle.add_argument("event_id")
    handle.add_argument("--reason", required=True, help="why it needs nothing more: access given by hand, refunded")
    handle.add_argument("--by", default="cli", help="the operator's name, recorded with the reason")
    handle.add_argument("--json", action="store_true", help="machine-readable output")
    handle.set_defaults(func=cmd_handle)
