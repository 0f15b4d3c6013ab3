"""Long-lived resources of one API process, built in the lifespan and torn down with it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from app.actions.runner import RetryPolicy
from app.config import Settings, rules_environment
from app.dispatch import ArqDispatcher, Dispatcher, EmbeddedExecutor
from app.rules.engine import RuleSet
from app.rules.loader import load_rules
from app.store.db import create_engine
from app.systeme.client import SystemeClient

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    rules: RuleSet
    engine: AsyncEngine
    client: SystemeClient
    dispatcher: Dispatcher
    redis: ArqRedis | None


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.retry_base_seconds,
        max_attempts=settings.retry_max_attempts,
        lease=timedelta(seconds=settings.action_lease_seconds),
    )


def systeme_client(settings: Settings) -> SystemeClient:
    return SystemeClient(
        base_url=settings.api_base_url, headers=settings.api_headers, timeout=settings.http_timeout_seconds
    )


def redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url, "REDIS_URL is not set"
    return RedisSettings.from_dsn(settings.redis_url)


@asynccontextmanager
async def app_state(settings: Settings) -> AsyncIterator[AppState]:
    rules = RuleSet(load_rules(settings.rules_file, rules_environment()))
    if settings.api_mode == "dry-run":
        log.warning(
            "DRY RUN: neither MATON_API_KEY nor SYSTEME_API_KEY is set; every planned action is recorded as "
            "skipped and nothing is sent to Systeme.io"
        )
    engine = create_engine(settings.database_url)
    client = systeme_client(settings)
    redis: ArqRedis | None = None
    executor: EmbeddedExecutor | None = None
    dispatcher: Dispatcher
    try:
        if settings.redis_url:
            redis = await create_pool(redis_settings(settings))
            dispatcher = ArqDispatcher(redis)
        else:
            executor = EmbeddedExecutor(
                engine=engine,
                client=client,
                policy=retry_policy(settings),
                concurrency=settings.embedded_concurrency,
            )
            executor.start()
            dispatcher = executor
        log.info("rules %s loaded: %d rules, %d sources", rules.version, len(rules.rules), len(rules.sources))
        yield AppState(settings, rules, engine, client, dispatcher, redis)
    finally:
        if executor is not None:
            await executor.stop()
        if redis is not None:
            await redis.aclose()
        await client.aclose()
        await engine.dispose()
