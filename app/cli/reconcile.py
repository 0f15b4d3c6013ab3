"""`systeme-flow reconcile`: where Systeme.io no longer matches what our actions did, and `--fix` to redo it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis

from app.accounts.registry import AccountClients, accounts_file
from app.cli.run import database_errors, fail, rules_or_exit, settings_or_exit, since_arg
from app.config import Settings
from app.errors import NotFound
from app.pipeline.dispatch import ArqDispatcher, Dispatcher, redis_settings
from app.reconcile.fix import choose, fix
from app.reconcile.service import Report, reconcile, render_text
from app.rules.schema import RulesFile
from app.store.db import create_engine
from app.systeme.client import SystemeClient


def _progress(account: str, done: int, total: int) -> None:
    # About ten lines per account, every contact when there are few: enough to see it move, not a flood.
    step = max(1, min(50, total // 10))
    if done % step == 0 or done == total:
        where = f" in account {account!r}" if account != "default" else ""
        sys.stderr.write(f"checked {done}/{total} contacts{where}\n")
        sys.stderr.flush()


def _confirm(count: int, contacts: int, waiting: int) -> bool:
    also = f" ({waiting} will wait for approval)" if waiting else ""
    sys.stderr.write(f"Plan {count} actions again for {contacts} contacts{also}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def _fix(
    args: argparse.Namespace, state: _State, report: Report, rules: RulesFile, output: dict[str, Any]
) -> int:
    """Plan the fixable drifts again (after asking, unless --yes); the number of drifts left as they are."""
    choice, approvals = choose(report.drifts, rules, recreate=args.recreate)
    output["fix"] = {"planned": [], "not_fixed": [{**d.to_json(), "reason": r} for d, r in choice.left]}
    if not args.json:
        for drift, reason in choice.left:
            print(f"not fixed: {drift.email} {drift.why}: {reason}")
    todo = choice.fix
    waiting = sum(1 for a in approvals.values() if a == "required")
    if not todo or not (args.yes or _confirm(len(todo), len({(d.account, d.email) for d in todo}), waiting)):
        if todo and not args.json:
            print("nothing planned")
        return len(report.drifts)
    window = timedelta(hours=state.settings.approval_timeout_hours)
    planned = await fix(state.engine, state.dispatcher(), todo, approvals, by=args.by, approval_window=window)
    output["fix"]["planned"] = planned
    if not args.json:
        for action in planned:
            print(f"planned {action['id']}  {action['status']:<17} {action['contact_email']}  {action['kind']}")
    return len(choice.left)


async def _reconcile(args: argparse.Namespace, state: _State, rules: RulesFile | None) -> int:
    # Only what the current mode of each account did: the simulator's work is not drift in a live account.
    modes = state.clients.modes if state.clients is not None else None
    report = await reconcile(
        state.engine, client_for=state.client, since=args.since, rule=args.rule, progress=_progress, modes=modes
    )
    for error in report.errors + [f"{u['contact']} not checked: {u['error']}" for u in report.unchecked]:
        sys.stderr.write(f"systeme-flow reconcile: error: {error}\n")
    output = report.to_json()
    if not args.json:
        print("\n".join(render_text(report)), flush=True)
    left = await _fix(args, state, report, rules, output) if rules is not None else len(report.drifts)
    if args.json:
        print(json.dumps(output, indent=2, default=str))
    # 2: something could not be checked; 1: drift is left (found, and not planned again); 0: all in order.
    return 2 if not report.complete else 1 if left else 0


class _State:
    """The command's connections: the database, Redis when configured, one client per account it reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.redis: ArqRedis | None = None
        self.clients: AccountClients | None = None

    async def __aenter__(self) -> _State:
        if self.settings.redis_url:
            self.redis = await create_pool(redis_settings(self.settings))
        self.clients = AccountClients(self.settings, accounts_file(self.settings), redis=self.redis)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.clients is not None:
            await self.clients.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()

    def client(self, account: str) -> SystemeClient:
        """With Redis, the workers' shared quota: a reconcile never pushes the account over it while they run."""
        assert self.clients is not None
        client, problem = self.clients.client(account), self.clients.problem(account)
        if client is None or problem is not None:
            raise NotFound(problem or f"no account {account!r}")
        return client

    def dispatcher(self) -> Dispatcher | None:
        # Without Redis the running service's sweep picks up what becomes due within a second.
        return ArqDispatcher(self.redis) if self.redis is not None else None


def cmd_reconcile(args: argparse.Namespace) -> None:
    settings = settings_or_exit()
    if settings.api_mode == "dry-run":
        fail("reconcile: needs MATON_API_KEY or SYSTEME_API_KEY to read the account")
    # --fix plans from the rules in force: an action whose rule is gone or disabled is not planned again.
    rules = rules_or_exit(settings.rules_file, strict_env=False).file if args.fix else None
    with database_errors("reconcile", settings):

        async def run() -> int:
            async with _State(settings) as state:
                return await _reconcile(args, state, rules)

        status = asyncio.run(run())
    sys.exit(status)


def add_commands(commands: Any) -> None:
    reconcile = commands.add_parser(
        "reconcile", help="list where Systeme.io no longer matches what our actions did (GET only); --fix redoes it"
    )
    reconcile.add_argument("--since", type=since_arg, default="30d", help="actions that succeeded since: 30d or a date")
    reconcile.add_argument("--rule", help="only the contacts this rule's actions touched")
    reconcile.add_argument("--json", action="store_true", help="machine-readable output")
    reconcile.add_argument("--fix", action="store_true", help="plan the missing actions again (asks first)")
    reconcile.add_argument("--yes", action="store_true", help="with --fix: do not ask")
    reconcile.add_argument("--recreate", action="store_true", help="with --fix: also redo deleted contacts' actions")
    reconcile.add_argument("--by", default="cli", help="the operator's name, recorded on the new actions")
    reconcile.set_defaults(func=cmd_reconcile)
