"""Service commands: serve, worker, health, db upgrade, simulator."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.accounts.modes import on_loopback
from app.config import (
    SECRET_SETTINGS,
    Settings,
    get_settings,
    rules_environment,
    setting_source,
    settings_problems,
)
from app.errors import RulesError, StorageUnavailable
from app.health import add_arguments as add_health_arguments
from app.health import run as run_health
from app.logs import configure_logging
from app.rules.loader import LoadedRules, load_rules
from app.text import counted
from app.timeparse import parse_since


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: the command could not do what was asked."""
    sys.stderr.write(f"systeme-flow {message}\n")
    sys.exit(2)


def confirm(question: str) -> bool:
    """Ask on stderr, read one line of stdin: only y or yes agrees (an empty or closed stdin does not)."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def since_arg(value: str) -> datetime:
    """argparse type for --since: a bad value is a usage error, not a traceback."""
    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


@contextmanager
def database_errors(command: str, settings: Settings) -> Iterator[None]:
    """A database that cannot be reached, read or even named: one line that says so, without its password."""
    try:
        yield
    except (SQLAlchemyError, OSError, ImportError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = (str(cause).strip().splitlines() or [type(exc).__name__])[0]
        text = re.sub(r"^<class '[\w.]+'>: ", "", text)  # asyncpg's errors as SQLAlchemy wraps them
        for secret in settings.secret_values():
            text = text.replace(secret, "***")
        hint = ""
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            # Often a command run from another folder: a new, empty SQLite file rather than the service's.
            url = make_url(settings.database_url)
            where = str(Path(url.database).resolve()) if url.get_backend_name() == "sqlite" and url.database else ""
            hint = (
                f" (the database {where or 'at DATABASE_URL'} has no tables: run `systeme-flow db upgrade` first, "
                "or run this where `serve` runs, so it reads the same .env)"
            )
        fail(f"{command}: database error: {text}{hint}")


log = logging.getLogger(__name__)


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        fail(f"cannot run: invalid settings: {'; '.join(settings_problems(exc))}")


def service_settings_or_exit() -> tuple[Settings, LoadedRules]:
    """The settings and the rules a service starts with, or every problem of both in one report: the placeholders
    of an unedited `.env` land in both (ADMIN_TOKEN in the settings, the sources' secrets in the rules file), and
    each must be named at the first start, not one per restart."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = settings_problems(exc)
        try:
            # The same settings without their secrets: enough to find the rules file and read its problems too.
            lenient = Settings(**dict.fromkeys(SECRET_SETTINGS))
            load_rules(lenient.rules_file, rules_environment(), strict_env=True)
        except ValidationError:
            pass  # something else is wrong as well: the settings' own problems come first
        except RulesError as rules:
            problems += rules.problems
        fail(f"cannot run: invalid settings: {'; '.join(problems)}")
    return settings, rules_or_exit(settings.rules_file)


def rules_or_exit(path: str, *, strict_env: bool = True) -> LoadedRules:
    """The loaded rules, or every problem on stdout and exit status 1."""
    try:
        return load_rules(path, rules_environment(), strict_env=strict_env)
    except RulesError as exc:
        print("\n".join(exc.problems))
        sys.exit(1)


def storage_or_exit(settings: Settings) -> None:
    """A database folder this user cannot write stops the command in one line, before SQLite's traceback would."""
    from app.store.db import ensure_sqlite_folder

    try:
        ensure_sqlite_folder(settings.database_url)
    except StorageUnavailable as exc:
        sys.exit(f"systeme-flow: {exc.message}")


def port_or_exit(host: str, port: int, command: str = "serve", hint: str = "") -> None:
    """A port already taken stops `serve` (or the simulator) in one line with the way out, before it announces an
    address it will not serve (uvicorn's own error comes after the banner, as a log line, or as a raw
    `[Errno 98]`). Binding again later is still checked."""
    try:
        # The socket uvicorn opens: IPv6 only for an address with a colon, and a closing socket counts as free.
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        way_out = hint or " (another `serve`?): stop it, or pick another with --port (make run PORT=...)"
        fail(f"{command}: cannot listen on {host}:{port}: {exc.strerror or exc}{way_out if taken else ''}")


def _migrate(settings: Settings, command: str) -> None:
    from app.store.migrate import upgrade

    with database_errors(command, settings):
        upgrade(settings.database_url)


def startup_lines(settings: Settings, rules: LoadedRules, *, host: str, port: int) -> list[str]:
    """What a person starting the service needs to know first; secrets are named, never shown."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    first = f"systeme-flow serving {base}" + (" (on every address)" if shown != host else "")
    published = settings.published_address()
    if published is not None:
        # In a container: its own port means nothing to the person reading the logs on the host.
        public_host, public_port = published
        shown = "127.0.0.1" if public_host in ("0.0.0.0", "::") else public_host
        if public_port is None:
            where = f"`docker compose port --index N api {port}`"
            first = f"systeme-flow serving :{port} in this container, on a free host port per replica ({where})"
        else:
            base = f"http://{shown}:{public_port}"
            first = f"systeme-flow serving {base} (API_PORT; :{port} in this container)"
    if settings.admin_token is None:
        sign_in = "disabled: set ADMIN_TOKEN (in .env or the environment) to enable it"
    else:
        sign_in = f"sign in with ADMIN_TOKEN (from {setting_source('ADMIN_TOKEN') or 'the settings'})"
    account = {
        "dry-run": "dry run: no MATON_API_KEY or SYSTEME_API_KEY, actions are recorded as skipped, nothing is sent",
        "maton": f"through Maton (MATON_API_KEY), {settings.api_base_url}",
        "direct": f"direct (SYSTEME_API_KEY), {settings.api_base_url}",
    }[settings.api_mode]
    if settings.api_mode != "dry-run" and on_loopback(settings.api_base_url):
        # The mode the account is recorded under (app/accounts/modes.py): nothing here reaches a real account.
        account = f"the simulator on this machine ({settings.api_base_url}): test mode, no real account is reached"
    executor = "arq workers on REDIS_URL" if settings.redis_url else "in this process (no REDIS_URL)"
    counts = f"{counted(len(rules.file.rules), 'rule')}, {counted(len(rules.file.sources), 'source')}"
    return [
        first,
        f"  dashboard: {base}/ui  {sign_in}",
        f"  account:   {account}",
        f"  actions:   {executor}",
        f"  rules:     {rules.path} ({counts})",
    ]


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.main import create_app
    from app.server import server_options

    settings, rules = service_settings_or_exit()
    configure_logging(secrets=settings.secret_values() | rules.file.secret_values(), style=settings.log_format)
    storage_or_exit(settings)
    port_or_exit(args.host, args.port)
    if not args.no_migrate:
        _migrate(settings, "serve")
    from app.cli.discard import startup_leftover_lines

    lines = startup_lines(settings, rules, host=args.host, port=args.port) + startup_leftover_lines(settings)
    print("\n".join(lines), flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, **server_options(settings))


def cmd_worker(args: argparse.Namespace) -> None:
    from arq.worker import run_worker

    settings = settings_or_exit()
    if not settings.redis_url:
        fail("worker: needs REDIS_URL; without it, `serve` runs the actions itself")
    configure_logging(secrets=settings.secret_values(), style=settings.log_format)
    storage_or_exit(settings)
    if not args.no_migrate:
        _migrate(settings, "worker")
    from workers.settings import WorkerSettings

    if args.burst:
        run_worker(WorkerSettings, burst=True)  # type: ignore[arg-type]
    else:
        _work_through_redis_outages(WorkerSettings)


REDIS_BACKOFF_MAX_SECONDS = 30.0


def _work_through_redis_outages(settings_cls: Any) -> None:
    """arq's worker exits when Redis is unreachable, at start or later: run it again, with backoff, instead.

    Nothing is lost meanwhile: the actions are in the database, and the sweep dispatches them once Redis is back.
    """
    from arq.worker import create_worker
    from redis.exceptions import RedisError

    # One attempt per run: the backoff here replaces arq's fixed retries.
    redis_settings = dataclasses.replace(settings_cls.redis_settings, conn_retries=0)
    delay = 1.0
    while True:
        started = time.monotonic()
        worker = create_worker(settings_cls, redis_settings=redis_settings)
        try:
            worker.run()
            return  # stopped by a signal
        except (RedisError, OSError) as exc:
            error = exc
        _release(worker)
        if time.monotonic() - started > 60:
            delay = 1.0  # it ran a while: this is a new outage
        log.warning(
            "Redis is unavailable (%s: %s): the worker starts again in %.0f s", type(error).__name__, error, delay
        )
        try:
            time.sleep(delay)
        except KeyboardInterrupt:
            return
        delay = min(delay * 2, REDIS_BACKOFF_MAX_SECONDS)


def _release(worker: Any) -> None:
    """What a worker that failed on Redis still holds (database engine, HTTP client); and the default signal
    handling back, so that SIGTERM or Ctrl-C during the wait stops the process at once."""
    if worker.on_shutdown is not None and "engine" in worker.ctx:
        try:
            worker.loop.run_until_complete(worker.on_shutdown(worker.ctx))
        except Exception:
            log.exception("releasing the failed worker's resources")
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            worker.loop.remove_signal_handler(signum)


def cmd_db(args: argparse.Namespace) -> None:
    settings = settings_or_exit()
    configure_logging(secrets=settings.secret_values(), style=settings.log_format)
    storage_or_exit(settings)
    _migrate(settings, "db upgrade")


def cmd_simulator(args: argparse.Namespace) -> None:
    import uvicorn

    from app.simulator import create_simulator

    hint = " (another simulator?): stop it, or pick another with --port (make simulator SIM_PORT=...)"
    port_or_exit(args.host, args.port, "simulator", hint)
    app = create_simulator(api_key=args.api_key, rate_limit=args.rate_limit, window_seconds=args.window)
    uvicorn.run(app, host=args.host, port=args.port)


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the HTTP API (and the actions, when REDIS_URL is unset)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply database migrations first")
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="run the arq worker (needs REDIS_URL)")
    worker.add_argument("--no-migrate", action="store_true")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.set_defaults(func=cmd_worker)

    health = commands.add_parser("health", help="exit 0 when this host's API or worker is alive (Docker's check)")
    add_health_arguments(health)
    health.set_defaults(func=run_health)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply the migrations").set_defaults(func=cmd_db)

    sim = commands.add_parser("simulator", help="run the local Systeme.io simulator (for trying rules safely)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9000)
    sim.add_argument("--api-key", default=None, help="require this X-API-Key or Bearer token")
    sim.add_argument("--rate-limit", type=int, default=0, help="requests per window (0: unlimited)")
    sim.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds")
    sim.set_defaults(func=cmd_simulator)
