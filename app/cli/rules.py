"""Rules commands: check, schema, explain, backtest. None of them changes the Systeme.io account."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from app.cli.run import rules_or_exit, settings_or_exit
from app.errors import AppError
from app.rules.engine import RuleSet
from app.rules.jsonschema import rules_schema
from app.rules.loader import LoadedRules
from app.state import systeme_client
from app.timeparse import parse_since


def cmd_check(args: argparse.Namespace) -> None:
    path = args.file or settings_or_exit().rules_file
    loaded = rules_or_exit(path, strict_env=not args.no_env)
    problems = list(loaded.warnings)
    if args.live:
        problems += asyncio.run(_live(loaded))
    for problem in problems:
        print(problem)
    if any(p.severity == "error" for p in problems):
        sys.exit(1)
    print(f"{len(loaded.file.rules)} rules, {len(loaded.file.sources)} sources: OK")


async def _live(loaded: LoadedRules) -> list[Any]:
    from app.preview.live import live_problems

    settings = settings_or_exit()
    if settings.api_mode == "dry-run":
        sys.exit("systeme-flow check --live needs MATON_API_KEY or SYSTEME_API_KEY to read the account")
    client = systeme_client(settings)
    try:
        return await live_problems(loaded, client.session())
    finally:
        await client.aclose()


def cmd_schema(args: argparse.Namespace) -> None:
    print(json.dumps(rules_schema(), indent=2))


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep:
            sys.exit(f"--header {value!r}: expected NAME:VALUE")
        headers[name.strip().lower()] = content.strip()
    return headers


def cmd_explain(args: argparse.Namespace) -> None:
    from app.preview.service import explain, render_text
    from app.webhooks.body import build_delivery

    rules = RuleSet(rules_or_exit(args.rules or settings_or_exit().rules_file, strict_env=args.verify))
    body = Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read()
    headers = _headers(args.header)
    if "content-type" not in headers:
        try:
            json.loads(body)
            headers["content-type"] = "application/json"
        except ValueError:
            headers["content-type"] = "application/x-www-form-urlencoded"

    async def run() -> dict[str, Any]:
        config = rules.sources.get(args.source)
        delivery = await build_delivery(config.type if config else "", headers, body, {})
        client = systeme_client(settings_or_exit()) if args.live else None
        try:
            return await explain(rules, source=args.source, delivery=delivery, verify=args.verify, client=client)
        finally:
            if client is not None:
                await client.aclose()

    if args.live and settings_or_exit().api_mode == "dry-run":
        sys.exit("systeme-flow explain --live needs MATON_API_KEY or SYSTEME_API_KEY to read the account")
    try:
        report = asyncio.run(run())
    except AppError as exc:
        sys.exit(f"systeme-flow explain: {exc.message}")
    print(json.dumps(report, indent=2, default=str) if args.json else render_text(report))


def _since(value: str) -> datetime:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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

    report = asyncio.run(run())
    print(json.dumps(report, indent=2) if args.json else render_text(report))


def add_commands(commands: Any) -> None:
    check = commands.add_parser("check", help="validate a rules file")
    check.add_argument("file", nargs="?", help="the rules file (default: RULES_FILE, else rules.yaml)")
    check.add_argument("--no-env", action="store_true", help="unset ${VAR}s are warnings (for CI without secrets)")
    check.add_argument("--live", action="store_true", help="also look up courses, communities and tags (GET only)")
    check.set_defaults(func=cmd_check)

    schema = commands.add_parser("schema", help="print the JSON Schema of the rules format")
    schema.set_defaults(func=cmd_schema)

    explain = commands.add_parser("explain", help="run one event through the rules, with no side effects")
    explain.add_argument("file", help="the event body as the source would post it (- for stdin)")
    explain.add_argument("--source", required=True, help="the source name in the rules file")
    explain.add_argument("--rules", help="the rules file (default: RULES_FILE)")
    explain.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable")
    explain.add_argument("--verify", action="store_true", help="check the signature (give its headers)")
    explain.add_argument("--live", action="store_true", help="read the account (GET only): change or no-op")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)

    backtest = commands.add_parser("backtest", help="replay stored events through a rules file, and diff")
    backtest.add_argument("--since", type=_since, default="7d", help="7d, 12h, or a date")
    backtest.add_argument("--rules", help="the rules file to try (default: RULES_FILE)")
    backtest.add_argument("--json", action="store_true")
    backtest.set_defaults(func=cmd_backtest)
