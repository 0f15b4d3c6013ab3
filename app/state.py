"""Long-lived resources of one API process, built in the lifespan and torn down with it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts import AccountClients
from app.actions.runner import RetryPolicy
from app.config import Settings, rules_environment
from app.dispatch import ArqDispatcher, Dispatcher, EmbeddedExecutor
from app.errors import RulesError
from app.holds import check_accounts
from app.planning import Planner, fire_limit_for
from app.rules.engine import RuleSet
from app.rules.loader import load_rules
from app.rules.templates import TemplateError
from app.store.db import create_engine
from app.store.writer import GroupWriter
from app.systeme.client import SystemeClient
from app.systeme.names import NameCache
from app.systeme.quota import MemoryQuota, Quota
from app.webhooks.ratelimit import Limiter, MemoryLimiter, RedisLimiter, trusted_networks

log = logging.getLogger(__name__)
# Planning, and in embedded mode each run, starts only once no delivery waits to be stored and none arrived for
# INGEST_GAP_SECONDS (within a burst deliveries come a millisecond or less apart), or after INGEST_FIRST_SECONDS.
INGEST_FIRST_SECONDS = 1.0
INGEST_GAP_SECONDS = 0.005


@dataclass
class AppState:
    settings: Settings
    rules: RuleSet
    engine: AsyncEngine
    clients: AccountClients
    dispatcher: Dispatcher
    redis: ArqRedis | None
    limiter: Limiter
    trusted_proxies: list[IPv4Network | IPv6Network]
    writer: GroupWriter
    planner: Planner
    # The problems of the last refused reload; the previous rules keep serving meanwhile.
    rules_error: list[str] | None = None

    def reload_rules(self) -> bool:
        """Load the rules file again; an invalid file is refused and the rules in force stay."""
        try:
            rules = RuleSet(load_rules(self.settings.rules_file, rules_environment()))
        except (RulesError, TemplateError) as exc:
            self.rules_error = exc.problems if isinstance(exc, RulesError) else [str(exc)]
            log.error("rules reload refused, %s stays in force:\n%s", self.rules.version, "\n".join(self.rules_error))
            return False
        self.rules_error = None
        if rules.version != self.rules.version:
            log.info("rules reloaded: %s -> %s", self.rules.version, rules.version)
            self.rules = rules
            self.clients.update(rules.loaded.file)
        return True


async def watch_rules(state: AppState, interval: float = 2.0) -> None:
    """Reload when the rules file changes on disk (polling: works on every filesystem and in containers)."""
    path = Path(state.settings.rules_file)

    def stamp() -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    seen = stamp()
    while True:
        await asyncio.sleep(interval)
        current = stamp()
        if current != seen and current is not None:
            seen = current
            await asyncio.to_thread(state.reload_rules)  # parsing a big file must not stall requests


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        delays=settings.retry_delays,
        max_attempts=settings.retry_max_attempts,
        lease=timedelta(seconds=settings.action_lease_seconds),
        ordering_wait=timedelta(seconds=settings.ordering_wait_seconds),
        mirror_fresh=timedelta(seconds=settings.mirror_fresh_seconds),
    )


def systeme_client(settings: Settings, quota: Quota | None = None, names: NameCache | None = None) -> SystemeClient:
    """The process's one Systeme.io client; workers pass the quota and name cache they share through Redis."""
    return SystemeClient(
        base_url=settings.api_base_url,
        headers=settings.api_headers,
        timeout=settings.http_timeout_seconds,
        quota=quota or MemoryQuota(per_second=settings.per_second_cap),
        names=names,
        dry_run=settings.api_mode == "dry-run",
    )


def redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url, "REDIS_URL is not set"
    return RedisSettings.from_dsn(settings.redis_url)


def _on_sighup(state: AppState) -> None:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, state.reload_rules)
    except (ValueError, RuntimeError, NotImplementedError):
        pass  # not the main thread (tests), or no SIGHUP on this platform: the file watcher still reloads


@asynccontextmanager
async def app_state(settings: Settings) -> AsyncIterator[AppState]:
    rules = RuleSet(load_rules(settings.rules_file, rules_environment()))
    if settings.api_mode == "dry-run":
        log.warning(
            "DRY RUN: neither MATON_API_KEY nor SYSTEME_API_KEY is set; every planned action is recorded as "
            "skipped and nothing is sent to Systeme.io"
        )
    engine = create_engine(settings.database_url)
    redis: ArqRedis | None = None
    executor: EmbeddedExecutor | None = None
    clients: AccountClients | None = None
    watcher: asyncio.Task[None] | None = None
    planner: Planner | None = None
    dispatcher: Dispatcher
    writer = GroupWriter(engine)
    try:
        if settings.redis_url:
            redis = await create_pool(redis_settings(settings))
            dispatcher = ArqDispatcher(redis)
        clients = AccountClients(settings, rules.loaded.file, redis=redis)
        if not settings.redis_url:
            executor = EmbeddedExecutor(
                engine=engine,
                client=clients,
                policy=retry_policy(settings),
                concurrency=settings.embedded_concurrency,
                settings=settings,
                ingest_first=lambda: writer.quiet(INGEST_GAP_SECONDS, INGEST_FIRST_SECONDS),
            )
            await check_accounts(engine, clients, settings)  # workers check it themselves in Redis mode
            executor.start()
            dispatcher = executor
        log.info("rules %s loaded: %d rules, %d sources", rules.version, len(rules.rules), len(rules.sources))
        limiter: Limiter = RedisLimiter(redis) if redis is not None else MemoryLimiter()
        trusted = trusted_networks(settings.forwarded_allow_ips)
        planner = Planner(
            engine=engine,
            rules=lambda: state.rules,
            dispatch=dispatcher.dispatch,
            approval_window=timedelta(hours=settings.approval_timeout_hours),
            ingest_first=lambda: writer.quiet(INGEST_GAP_SECONDS, INGEST_FIRST_SECONDS),
            sweep_seconds=settings.sweep_seconds,
            fire_limit=fire_limit_for(engine, settings),
        )
        state = AppState(settings, rules, engine, clients, dispatcher, redis, limiter, trusted, writer, planner)
        planner.start()
        watcher = asyncio.create_task(watch_rules(state))
        _on_sighup(state)
        yield state
    finally:
        if watcher is not None:
            watcher.cancel()
        if planner is not None:
            await planner.stop()
        if executor is not None:
            await executor.stop()
        if redis is not None:
            await redis.aclose()
        if clients is not None:
            await clients.aclose()
        await engine.dispose()
