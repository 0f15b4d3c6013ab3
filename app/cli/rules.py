"""Rules commands: check, schema, explain, backtest. None of them changes the Systeme.io account."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from app.cli.run import database_errors, fail, rules_or_exit, settings_or_exit, since_arg
from app.errors import AppError
from app.rules.engine import RuleSet
from app.rules.jsonschema import rules_schema
from app.rules.loader import LoadedRules
from app.samples import samples_for, signed_request
from app.state import systeme_client
from app.text import counted

if TYPE_CHECKING:
    from app.preview.live import LiveReport


def cmd_check(args: argparse.Namespace) -> None:
    path = args.file or settings_or_exit().rules_file
    loaded = rules_or_exit(path, strict_env=not args.no_env)
    problems = list(loaded.warnings)
    if args.create_fields and not args.live:
        fail("check: --create-fields goes with --live")
    if args.live:
        live = asyncio.run(_live(loaded, create_fields=args.create_fields))
        print("\n".join(live.created), end="\n" if live.created else "")
        problems += live.problems
    for problem in problems:
        print(problem)
    if any(p.severity == "error" for p in problems):
        sys.exit(1)
    print(f"{counted(len(loaded.file.rules), 'rule')}, {counted(len(loaded.file.sources), 'source')}: OK")


async def _live(loaded: LoadedRules, *, create_fields: bool) -> LiveReport:
    from app.accounts.registry import AccountClients
    from app.maton.client import MatonClient
    from app.preview.live import live_check

    settings = settings_or_exit()
    clients = AccountClients(settings, loaded.file)
    if all(a.mode == "dry-run" and a.problem is None for a in clients.accounts.values()):
        fail("check: --live needs MATON_API_KEY or SYSTEME_API_KEY (or an account with `api_key`) to read the account")
    maton = MatonClient.from_settings(settings) if settings.maton_api_key is not None else None
    try:
        return await live_check(loaded, clients, maton=maton, create_fields=create_fields)
    finally:
        await clients.aclose()
        if maton is not None:
            await maton.http.aclose()


def cmd_schema(args: argparse.Namespace) -> None:
    print(json.dumps(rules_schema(), indent=2))


def cmd_explain(args: argparse.Namespace) -> None:
    from app.cli.send import parse_headers, read_event_file, sample_or_exit, source_or_exit
    from app.preview.service import explain, render_text
    from app.webhooks.body import build_delivery

    rules = RuleSet(rules_or_exit(args.rules or settings_or_exit().rules_file, strict_env=args.verify))
    config = source_or_exit(rules.loaded, args.source, "explain")
    if args.sample:
        body, headers = sample_or_exit(config, args.sample, "explain")
    elif args.file:
        body, headers = read_event_file(args.file, "explain")
    else:
        names = ", ".join(s.name for s in samples_for(config.type))
        fail(f"explain: give the event as a FILE, or --sample NAME (samples for '{config.type}': {names})")
    headers.update(parse_headers(args.header, "explain"))
    query: dict[str, str] = {}
    if args.sample and args.verify:
        # A sample carries no signature: sign it with the source's secret, so --verify checks the rules' secret.
        headers, query = signed_request(config, body, headers)
    headers = {k.lower(): v for k, v in headers.items()}
    if args.live and settings_or_exit().api_mode == "dry-run":
        fail("explain: --live needs MATON_API_KEY or SYSTEME_API_KEY to read the account")

    async def run() -> dict[str, Any]:
        delivery = await build_delivery(config.type, headers, body, query)
        client = systeme_client(settings_or_exit()) if args.live else None
        try:
            return await explain(rules, source=args.source, delivery=delivery, verify=args.verify, client=client)
        finally:
            if client is not None:
                await client.aclose()

    try:
        report = asyncio.run(run())
    except AppError as exc:
        fail(f"explain: {exc.message}")
    print(json.dumps(report, indent=2, default=str) if args.json else render_text(report))


def cmd_backtest(args: argparse.Namespace) -> None:
    from app.preview.backtest import backtest, render_text
    from app.store.db import create_engine

    settings = settings_or_exit()
    rules = RuleSet(rules_or_exit(args.rules or settings.rules_file, strict_env=False))

    async def run() -> dict[str, Any]:
        engine = create_engine(settings.database_url)
        try:
            return await backtest(engine, rules, since=args.since)
        finally:
            await engine.dispose()

    with database_errors("backtest", settings):
        report = asyncio.run(run())
    print(json.dumps(report, indent=2) if args.json else render_text(report))


def add_commands(commands: Any) -> None:
    check = commands.add_parser("check", help="validate a rules file")
    check.add_argument("file", nargs="?", help="the rules file (default: RULES_FILE, else rules.yaml)")
    check.add_argument("--no-env", action="store_true", help="unset ${VAR}s are warnings (for CI without secrets)")
    check.add_argument(
        "--live", action="store_true", help="also check each account's key and the rules' references (GET only)"
    )
    check.add_argument("--create-fields", action="store_true", help="with --live: create the missing contact fields")
    check.set_defaults(func=cmd_check)

    schema = commands.add_parser("schema", help="print the JSON Schema of the rules format")
    schema.set_defaults(func=cmd_schema)

    explain = commands.add_parser("explain", help="run one event through the rules, with no side effects")
    explain.add_argument("file", nargs="?", help="the event body as the source would post it (- for stdin)")
    explain.add_argument("--sample", help="a sample event of the source's type instead of a file (see `samples`)")
    explain.add_argument("--source", required=True, help="the source name in the rules file")
    explain.add_argument("--rules", help="the rules file (default: RULES_FILE)")
    explain.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable")
    explain.add_argument("--verify", action="store_true", help="check the signature (give its headers)")
    explain.add_argument("--live", action="store_true", help="read the account (GET only): change or no-op")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    backtest = commands.add_parser("backtest", help="replay stored events through a rules file, and diff")
    backtest.add_argument("--since", type=since_arg, default="7d", help="7d, 12h, or a date")
    backtest.add_argument("--rules", help="the rules file to try (default: RULES_FILE)")
    backtest.add_argument("--json", action="store_true")
    backtest.set_defaults(func=cmd_backtest)
