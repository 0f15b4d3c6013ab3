"""`doctor`: the going-live checks of docs/going-live.md, in order, each saying what it checked; exit status 1 while
something is still missing. It only reads: the settings, the rules file, the account (one GET per check) and the
database. Every failure is a line, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from app.accounts.modes import DRY_RUN, current_modes, describe, kind_of
from app.config import Settings, get_settings, rules_environment, settings_problems
from app.errors import AppError, RulesError
from app.rules.loader import LoadedRules, load_rules
from app.rules.schema import DEFAULT_ACCOUNT, SourceConfig
from app.text import counted

GUIDE = "docs/going-live.md"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    missing: int = 0

    def ok(self, step: str, text: str) -> None:
        self.lines.append(f"ok       {step}: {text}")

    def miss(self, step: str, text: str) -> None:
        self.missing += 1
        self.lines.append(f"missing  {step}: {text}")

    def note(self, step: str, text: str) -> None:
        self.lines.append(f"note     {step}: {text}")


def _settings(report: Report) -> Settings | None:
    try:
        get_settings.cache_clear()
        return get_settings()
    except ValidationError as exc:
        report.miss("settings", "; ".join(settings_problems(exc)))
        return None


def _rules(report: Report, settings: Settings) -> LoadedRules | None:
    try:
        loaded = load_rules(settings.rules_file, rules_environment())
    except RulesError as exc:
        report.miss("rules", f"{settings.rules_file} cannot be used: " + "; ".join(exc.problems[:3]))
        return None
    except Exception as exc:  # an unreadable file, a template that does not compile: said, not raised
        report.miss("rules", f"{settings.rules_file} cannot be read: {exc}")
        return None
    counts = f"{counted(len(loaded.file.rules), 'rule')}, {counted(len(loaded.file.sources), 'source')}"
    report.ok("rules", f"{settings.rules_file}: {counts}")
    return loaded


def _key(report: Report, settings: Settings, mode: str | None) -> bool:
    """Whether there is an account to check further (the simulator counts, though not as live)."""
    if settings.api_mode == "dry-run":
        report.miss(
            "key",
            f"no SYSTEME_API_KEY or MATON_API_KEY: a dry run, nothing is sent (where each key comes from: {GUIDE})",
        )
        return False
    which = "MATON_API_KEY" if settings.api_mode == "maton" else "SYSTEME_API_KEY"
    if settings.api_mode == "maton" and not settings.maton_connection:
        report.note("key", "MATON_API_KEY without MATON_CONNECTION: Maton picks your one Systeme.io connection")
    if mode is not None and kind_of(mode) == "simulator":
        # Still worth going on: the other checks tell what would work once the real account is configured.
        where = settings.api_base_url
        report.miss("key", f"{which} is set, but SYSTEME_API_URL ({where}) is this machine: the simulator, not live")
        return True
    report.ok("key", f"{which} is set: {describe(mode)}, {settings.api_base_url}")
    return True


async def _live(report: Report, settings: Settings, loaded: LoadedRules) -> bool:
    """`check --live`: the account takes the key, and what the rules name exists there."""
    from app.accounts.registry import AccountClients
    from app.maton.client import MatonClient
    from app.preview.live import live_check

    clients = AccountClients(settings, loaded.file)
    maton = MatonClient.from_settings(settings) if settings.maton_api_key is not None else None
    try:
        live = await live_check(loaded, clients, maton=maton)
    except Exception as exc:  # an unreachable API, a proxy answering HTML: one line
        where = urlsplit(settings.api_base_url).netloc or settings.api_base_url
        report.miss("check --live", f"the account could not be read at {where}: {_words(exc)}")
        return False
    finally:
        await clients.aclose()
        if maton is not None:
            await maton.http.aclose()
    errors = [str(p) for p in live.problems if p.severity == "error"]
    if errors:
        report.miss(
            "check --live", "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")
        )
        return False
    report.ok("check --live", "the account takes the key, and every tag, course and field the rules name exists")
    return True


async def _connected(report: Report, settings: Settings, loaded: LoadedRules) -> None:
    """`connect`: each `systeme` source has a webhook in the account that posts to its /hooks/<source>."""
    from app.accounts.registry import AccountClients
    from app.systeme import setup

    mine = [name for name, source in loaded.file.sources.items() if source.type == "systeme"]
    if not mine:
        report.ok("connect", "no `systeme` source: no Systeme.io webhook is needed")
        return
    clients = AccountClients(settings, loaded.file)
    try:
        client = clients.client(DEFAULT_ACCOUNT)
        assert client is not None
        hooks = await setup.webhooks(client.session())
    except Exception as exc:
        report.miss("connect", f"the account's webhooks could not be listed: {_words(exc)}")
        return
    finally:
        await clients.aclose()
    urls = [str(h.get("url") or "") for h in hooks]
    for name in mine:
        found = [u for u in urls if u.rstrip("/").endswith(f"/hooks/{name}")]
        if found:
            report.ok("connect", f"source {name}: the account posts to {found[0]}")
        else:
            report.miss(
                "connect",
                f"source {name}: no webhook posts to /hooks/{name}: run `systeme-flow connect --url https://YOUR-HOST`",
            )


async def _providers(report: Report, settings: Settings, loaded: LoadedRules, mode: str | None) -> None:
    """The provider's webhook URL and secret, a first real purchase and its refund: read from what was stored."""
    from app.store.db import create_engine
    from app.store.modes import mode_work

    engine = create_engine(settings.database_url)
    try:
        work = await mode_work(engine, mode or DRY_RUN, loaded.file.sources)
    except Exception as exc:
        report.miss("events", f"the database could not be read: {_words(exc)} (run `systeme-flow db upgrade`?)")
        return
    finally:
        await engine.dispose()
    for name, source in loaded.file.sources.items():
        if source.type == "systeme":
            continue
        signed = any(s.strip() for s in source.secret)
        if name in work.sources:
            how = "its secret is set" if signed else "it takes its token"
            report.ok("webhook", f"source {name}: {how}, and an event arrived under this account")
        else:
            report.miss(
                "webhook", f"source {name}: no event arrived yet under this account: {_first_event(name, source)}"
            )
    if work.succeeded:
        report.ok("test purchase", f"{work.succeeded} actions succeeded against this account")
    else:
        report.miss("test purchase", "no action has succeeded against this account yet: make a first real purchase")
    if work.refunds:
        report.ok("refund", f"{work.refunds} refund or cancellation events arrived under this account")
    else:
        report.miss("refund", "no refund or cancellation arrived yet: refund the test purchase")


def _first_event(name: str, source: SourceConfig) -> str:
    """How to get the first event of a source in, in its provider's terms (the token is not printed)."""
    url = f"https://YOUR-HOST/hooks/{name}"
    if source.type == "form":
        return (
            f"point your form's action (method POST) at {url}?token=<its token> (the source's `token:`) and submit "
            "it once"
        )
    if any(s.strip() for s in source.secret):
        return f"set the provider's webhook URL to {url} with the same secret, and send its test event"
    return f"set the provider's webhook URL to {url}?token=<its token> (the source's `token:`), and send its test event"


def _words(exc: BaseException) -> str:
    if isinstance(exc, AppError):
        return exc.message
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).strip().splitlines()[0]


async def diagnose() -> Report:
    report = Report()
    settings = _settings(report)
    if settings is None:
        return report
    report.ok("settings", "they load")
    loaded = _rules(report, settings)
    from app.accounts.registry import accounts_of

    mode = current_modes(accounts_of(settings, loaded.file if loaded else None)).get(DEFAULT_ACCOUNT)
    has_key = _key(report, settings, mode)
    if loaded is None:
        return report
    if has_key and await _live(report, settings, loaded):
        await _connected(report, settings, loaded)
    if has_key:
        await _providers(report, settings, loaded, mode)
    return report


def cmd_doctor(args: argparse.Namespace) -> None:
    try:
        report = asyncio.run(diagnose())
    except Exception as exc:  # the promise is no traceback, whatever breaks
        print(f"missing  doctor: a check could not run: {_words(exc)}")
        sys.exit(1)
    print("\n".join(report.lines))
    if report.missing:
        print(f"{report.missing} still missing: see {GUIDE}")
        sys.exit(1)
    print("ready: every going-live step is done")


def add_commands(commands: Any) -> None:
    parser = commands.add_parser("doctor", help="run the going-live checks in order and say what is still missing")
    parser.set_defaults(func=cmd_doctor)
