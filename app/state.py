"""Long-lived resources of one API process, built in the lifespan and torn down with it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from arq import create_pool
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.holds import check_accounts
from app.accounts.registry import AccountClients
from app.config import Settings
from app.errors import RulesError
from app.operator.modes import start_modes
from app.pipeline.dispatch import ArqDispatcher, Dispatcher, redis_settings
from app.pipeline.embedded import EmbeddedExecutor
from app.pipeline.planner import Planner
from app.pipeline.service import Pipeline, build_pipeline, close_pipeline
from app.rules.current import RulesInForce
from app.rules.engine import RuleSet
from app.store.db import create_engine
from app.store.writer import GroupWriter
from app.systeme.client import SystemeClient
from app.systeme.names import NameCache
from app.systeme.quota import MemoryQuota, Quota
from app.webhooks.ratelimit import Limiter, MemoryLimiter, RedisLimiter, trusted_networks

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    pipeline: Pipeline
    redis: ArqRedis | None
    limiter: Limiter
    trusted_proxies: list[IPv4Network | IPv6Network]
    writer: GroupWriter
    planner: Planner
    # /metrics' unserved-payments count and when it was read (monotonic): judged at most once a minute.
    unserved_read: tuple[float, int] | None = None

    @property
    def rules(self) -> RuleSet:
        # The API does not start without readable rules, and a refused reload keeps them (app/rules/current.py).
        rules = self.pipeline.rules.current
        assert rules is not None
        return rules

    @property
    def rules_error(self) -> list[str] | None:
        """The problems of the last refused reload; the previous rules keep serving meanwhile."""
        return self.pipeline.rules.error

    @property
    def engine(self) -> AsyncEngine:
        return self.pipeline.engine

    @property
    def clients(self) -> AccountClients:
        return self.pipeline.clients

    @property
    def dispatcher(self) -> Dispatcher:
        return self.pipeline.dispatcher

    def reload_rules(self) -> bool:
        """Load the rules file again; an invalid file is refused and the rules in force stay."""
        return self.pipeline.rules.load()


async def watch_rules(rules: RulesInForce, interval: float = 2.0) -> None:
    """Reload when the rules file changes on disk (polling: works on every filesystem and in containers)."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(rules.reload_if_changed)  # parsing a big file must not stall requests


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


def _on_sighup(state: AppState) -> None:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, state.reload_rules)
    except (ValueError, RuntimeError, NotImplementedError):
        pass  # not the main thread (tests), or no SIGHUP on this platform: the file watcher still reloads


@asynccontextmanager
async def app_state(settings: Settings) -> AsyncIterator[AppState]:
    rules = RulesInForce(settings.rules_file)
    if not rules.load():
        raise RulesError(rules.error or [])
    if settings.api_mode == "dry-run":
        log.warning(
            "DRY RUN: neither MATON_API_KEY nor SYSTEME_API_KEY is set; every planned action is recorded as "
            "skipped and nothing is sent to Systeme.io"
        )
    engine = create_engine(settings.database_url)
    redis: ArqRedis | None = None
    executor: EmbeddedExecutor | None = None
    pipeline: Pipeline | None = None
    watcher: asyncio.Task[None] | None = None
    planner: Planner | None = None
    dispatcher: Dispatcher
    writer = GroupWriter(engine)
    try:
        if settings.redis_url:
            redis = await create_pool(redis_settings(settings))
            dispatcher = ArqDispatcher(redis)
        else:
            executor = EmbeddedExecutor(concurrency=settings.embedded_concurrency, writer=writer)
            dispatcher = executor
        pipeline = build_pipeline(settings, engine, rules, dispatcher, redis)
        # Before any run: a mirror learned under another mode is forgotten, and what other modes left is logged.
        await start_modes(engine, pipeline.clients)
        if executor is not None:
            await check_accounts(engine, pipeline.clients, settings)  # workers check it themselves in Redis mode
            executor.start(pipeline)
        current = pipeline.rules.current
        assert current is not None
        log.info("rules %s loaded: %d rules, %d sources", current.version, len(current.rules), len(current.sources))
        limiter: Limiter = RedisLimiter(redis) if redis is not None else MemoryLimiter()
        trusted = trusted_networks(settings.forwarded_allow_ips)
        planner = Planner(
            engine=engine,
            rules=rules,
            dispatcher=dispatcher,
            approval_window=pipeline.approval_window,
            writer=writer,
            modes=pipeline.modes,
            fire_limit=pipeline.fire_limit,
        )
        state = AppState(settings, pipeline, redis, limiter, trusted, writer, planner)
        planner.start()
        watcher = asyncio.create_task(watch_rules(rules))
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
        if pipeline is not None:
            await close_pipeline(pipeline)
        else:
            await engine.dispose()
