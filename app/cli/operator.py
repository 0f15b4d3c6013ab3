"""Operator commands, reading the database through the same settings as the service: events, actions,
replay, retry, approve, reject, run-now, cancel."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import describe
from app.cli.run import database_errors, fail, rules_or_exit, settings_or_exit, since_arg
from app.config import Settings
from app.errors import AppError
from app.operator import service
from app.operator.modes import service_modes
from app.pipeline.dispatch import ArqDispatcher, Dispatcher
from app.rules.engine import RuleSet
from app.store.queries import ACTION_STATUSES, list_actions, list_events
from app.text import counted, escape_values

Job = Callable[[Settings, AsyncEngine, Dispatcher | None], Awaitable[Any]]


def _run(job: Job, command: str) -> Any:
    from arq import create_pool

    from app.pipeline.dispatch import redis_settings
    from app.store.db import create_engine

    settings = settings_or_exit()

    async def main() -> Any:
        engine = create_engine(settings.database_url)
        redis = await create_pool(redis_settings(settings)) if settings.redis_url else None
        try:
            # Without Redis the running service's sweep picks up what becomes due within a second.
            return await job(settings, engine, ArqDispatcher(redis) if redis else None)
        finally:
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    with database_errors(command, settings):
        try:
            return asyncio.run(main())
        except AppError as exc:
            fail(f"{command}: {exc.message}")


# Other command modules run their database jobs the same way.
run_job = _run


def _print(args: argparse.Namespace, value: Any, line: Callable[[dict[str, Any]], str]) -> None:
    if args.json:
        print(json.dumps(value, indent=2, default=str))
        return
    items = value["items"] if isinstance(value, dict) and "items" in value else [value]
    for item in items:
        # One line per item: a newline inside a payload's value must not start a line of its own.
        print(line(escape_values(item)))


def other_mode(mode: str | None, current: str | None, said: str) -> str:
    """Work of another mode than its account's now (a dry run's, the simulator's) says so on its line: beside the
    account's own it would read as real (app/accounts/modes.py)."""
    if mode is None or current is None or mode == current:
        return ""
    return f"  ({said} {describe(mode)})"


def _action_line(a: dict[str, Any], modes: dict[str, str | None] | None = None) -> str:
    said = a.get("outcome") or a.get("last_error") or ""
    if a["status"] == "pending" and a.get("last_error") and a.get("next_attempt_at"):
        said = f"{a['last_error']} (next attempt {a['next_attempt_at']})"
    elif a["status"] == "scheduled" and a.get("next_attempt_at"):
        said = f"due {a['next_attempt_at']}"
    elif a["status"] == "cancelled":
        said = a.get("note") or ""
    what = f"{a['rule_id']}: {a['kind']} {json.dumps(a['params'])}"
    account = f" [{a['account']}]" if a.get("account") not in (None, "default") else ""
    line = f"{a['id']}  {a['status']:<17} {what} {a.get('contact_email') or ''}{account}  {said}".rstrip()
    current = (modes or {}).get(a.get("account") or "default")
    return line + other_mode(a.get("mode"), current, "never runs here: planned under")


def cmd_events(args: argparse.Namespace) -> None:
    modes: dict[str, str | None] = {}

    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        items, cursor = await list_events(
            engine, source=args.source, event_type=args.type, status=args.status, since=args.since, limit=args.limit
        )
        modes.update(await service_modes(engine, settings))
        return {"items": items, "next_cursor": cursor}

    def line(e: dict[str, Any]) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(e["actions"].items())) or "no actions"
        who = ", ".join(e["contacts"]) or "-"
        rules = f"[{', '.join(e['rules'])}]" if e["rules"] else "[no rule matched]"
        kind = f"{e['source']}/{e['type'] or '-'}"
        other = other_mode(e.get("mode"), modes.get("default"), "arrived under")
        return f"{e['id']}  {e['received_at'][:19]}  {who}  {kind}  {rules}  ({counts}){other}"

    _print(args, _run(job, args.command), line)


def cmd_actions(args: argparse.Namespace) -> None:
    modes: dict[str, str | None] = {}

    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        items, cursor = await list_actions(
            engine, status=args.status, rule=args.rule, contact=args.contact, limit=args.limit
        )
        modes.update(await service_modes(engine, settings))
        return {"items": items, "next_cursor": cursor}

    _print(args, _run(job, args.command), lambda a: _action_line(a, modes))


def cmd_replay(args: argparse.Namespace) -> None:
    rules = RuleSet(rules_or_exit(settings_or_exit().rules_file))

    async def job(settings: Settings, engine: AsyncEngine, dispatcher: Dispatcher | None) -> Any:
        window = timedelta(hours=settings.approval_timeout_hours)
        modes = await service_modes(engine, settings)
        return await service.replay(
            engine, dispatcher, rules, args.event_id, by=args.by, approval_window=window, modes=modes
        )

    _print(
        args,
        _run(job, args.command),
        lambda r: (
            f"{r['event_id']}: {len(r['actions'])} actions planned again under {r['planned_under']} "
            f"({r['rules_version']})"
        ),
    )


def cmd_retry(args: argparse.Namespace) -> None:
    async def job(settings: Settings, engine: AsyncEngine, dispatcher: Dispatcher | None) -> Any:
        if args.action_id:
            modes = await service_modes(engine, settings)
            return await service.retry(engine, dispatcher, args.action_id, by=args.by, modes=modes)
        if not (args.status or args.rule):
            fail("retry: give an action id, or --status and/or --rule")
        modes = await service_modes(engine, settings)
        retried = await service.retry_many(
            engine, dispatcher, by=args.by, status=args.status, rule=args.rule, modes=modes
        )
        return {"retried": retried}

    _print(
        args,
        _run(job, args.command),
        lambda r: f"retried {len(r['retried'])} actions" if "retried" in r else _action_line(r),
    )


def cmd_approve(args: argparse.Namespace) -> None:
    async def job(settings: Settings, engine: AsyncEngine, dispatcher: Dispatcher | None) -> Any:
        modes = await service_modes(engine, settings)
        return await service.approve(engine, dispatcher, args.action_id, by=args.by, modes=modes)

    _print(args, _run(job, args.command), _action_line)


def cmd_reject(args: argparse.Namespace) -> None:
    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        return await service.reject(engine, args.action_id, by=args.by, reason=args.reason)

    _print(args, _run(job, args.command), _action_line)


def cmd_run_now(args: argparse.Namespace) -> None:
    async def job(settings: Settings, engine: AsyncEngine, dispatcher: Dispatcher | None) -> Any:
        modes = await service_modes(engine, settings)
        return await service.run_now(engine, dispatcher, args.action_id, by=args.by, modes=modes)

    _print(args, _run(job, args.command), _action_line)


def cmd_cancel(args: argparse.Namespace) -> None:
    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        return await service.cancel(engine, args.action_id, by=args.by, reason=args.reason)

    _print(args, _run(job, args.command), _action_line)


def cmd_forget(args: argparse.Namespace) -> None:
    from app.store.retention import forget

    if args.account is not None and not args.in_systeme:
        fail("forget: --account goes with --in-systeme")

    async def job(settings: Settings, engine: AsyncEngine, dispatcher: Dispatcher | None) -> Any:
        if not args.in_systeme:
            return await forget(engine, args.email)
        return await _forget_in_systeme(settings, engine, dispatcher)

    async def _forget_in_systeme(settings: Settings, engine: AsyncEngine, dispatcher: Dispatcher | None) -> Any:
        from app.accounts.registry import AccountClients, accounts_file
        from app.operator.erasure import forget_in_systeme
        from app.pipeline.service import retry_policy

        # With Redis, the workers' shared quota: the erasure never pushes the account over it while they run.
        redis = dispatcher.redis if isinstance(dispatcher, ArqDispatcher) else None
        clients = AccountClients(settings, accounts_file(settings), redis=redis)
        try:
            return await forget_in_systeme(
                engine, clients, retry_policy(settings), email=args.email, account=args.account or "default", by=args.by
            )
        finally:
            await clients.aclose()

    def line(r: dict[str, Any]) -> str:
        if "forgotten" not in r:
            return f"forgotten: {counted(r['events'], 'event')}, {counted(r['actions'], 'action')}"
        erased, forgotten = r["erased"], r["forgotten"]
        return (
            f"erased in Systeme.io (account {r['account']}): {erased['outcome']} (action {erased['action_id']})\n"
            f"forgotten: {counted(forgotten['events'], 'event')}, {counted(forgotten['actions'], 'action')}"
        )

    _print(args, _run(job, args.command), line)


def add_commands(commands: Any) -> None:
    def command(name: str, help: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(func=func)
        return parser

    events = command("events", "list stored events, newest first", cmd_events)
    events.add_argument("--source")
    events.add_argument("--type")
    events.add_argument("--status", choices=ACTION_STATUSES, help="events with an action in this status")
    events.add_argument("--since", type=since_arg, help="7d, 12h, 30m or an ISO date")
    events.add_argument("--limit", type=int, default=50)

    actions = command("actions", "list actions, newest first", cmd_actions)
    actions.add_argument("--status", choices=ACTION_STATUSES)
    actions.add_argument("--rule")
    actions.add_argument("--contact", help="an email address")
    actions.add_argument("--limit", type=int, default=50)

    forget = command("forget", "erase what is stored about a person (payloads, headers, fields)", cmd_forget)
    forget.add_argument("email")
    forget.add_argument(
        "--in-systeme", action="store_true", help="first erase the contact in Systeme.io too (recorded), then here"
    )
    forget.add_argument("--account", help="the Systeme.io account to erase it in (with --in-systeme; default: default)")
    forget.add_argument("--by", default="cli", help="the operator's name, recorded on the erasure")

    for name, help, func in (
        ("replay", "run a stored event through the current rules again", cmd_replay),
        ("retry", "retry a failed, dead, rejected or skipped action (or many)", cmd_retry),
        ("approve", "approve an action that awaits approval", cmd_approve),
        ("reject", "reject an action that awaits approval", cmd_reject),
        ("run-now", "run a scheduled action now instead of at its time", cmd_run_now),
        ("cancel", "cancel a scheduled action", cmd_cancel),
    ):
        parser = command(name, help, func)
        parser.add_argument("--by", default="cli", help="the operator's name, recorded on the action")
        if name == "replay":
            parser.add_argument("event_id")
        elif name == "retry":
            parser.add_argument("action_id", nargs="?")
            parser.add_argument("--status", choices=ACTION_STATUSES)
            parser.add_argument("--rule")
        else:
            parser.add_argument("action_id")
        if name in ("reject", "cancel"):
            parser.add_argument("--reason")
