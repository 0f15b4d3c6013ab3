"""The pipeline's parts, put together once per process: the API's (embedded or arq) and each arq worker's.

What follows a run (`settle`) and the periodic sweep (`sweep`) take this one object in both modes, so neither is
written twice; only the dispatcher differs (arq jobs, or the embedded executor's queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.holds import check_accounts
from app.accounts.registry import AccountClients
from app.actions.policy import RetryPolicy
from app.config import Settings
from app.operator.modes import start_modes
from app.pipeline.dispatch import ArqDispatcher, Dispatcher
from app.pipeline.planner import LEFTOVER_SECONDS, FireLimit, fire_limit_for
from app.rules.current import RulesInForce
from app.store.db import create_engine
from app.store.leases import new_holder


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        delays=settings.retry_delays,
        max_attempts=settings.retry_max_attempts,
        lease=timedelta(seconds=settings.action_lease_seconds),
        ordering_wait=timedelta(seconds=settings.ordering_wait_seconds),
        # An unjudged event is planned by a sweep once LEFTOVER_SECONDS old, within SWEEP_SECONDS; 20 s of margin.
        unjudged_wait=timedelta(seconds=LEFTOVER_SECONDS + settings.sweep_seconds + 20),
        mirror_fresh=timedelta(seconds=settings.mirror_fresh_seconds),
        quota_wait=settings.quota_slot_wait_seconds,
    )


@dataclass
class Pipeline:
    settings: Settings
    engine: AsyncEngine
    rules: RulesInForce
    clients: AccountClients
    dispatcher: Dispatcher
    policy: RetryPolicy
    # This process's name when it takes a duty's turn (app/store/leases.py).
    holder: str = field(default_factory=new_holder)

    @property
    def approval_window(self) -> timedelta:
        return timedelta(hours=self.settings.approval_timeout_hours)

    @property
    def fire_limit(self) -> FireLimit:
        """RULE_FIRES_PER_CONTACT, alerting (as every alert kind, at most once an hour) when it holds a rule."""
        return fire_limit_for(self.engine, self.settings)

    def modes(self) -> dict[str, str | None]:
        """Each account's current mode (app/accounts/modes.py): the work that may run now, and that new work gets."""
        return self.clients.modes


def build_pipeline(
    settings: Settings, engine: AsyncEngine, rules: RulesInForce, dispatcher: Dispatcher, redis: ArqRedis | None
) -> Pipeline:
    """The parts around loaded rules: one client per account (rebuilt as the rules change), the retry policy."""
    clients = AccountClients(settings, rules.file, redis=redis)
    rules.on_change(clients.update)
    return Pipeline(settings, engine, rules, clients, dispatcher, retry_policy(settings))


async def worker_pipeline(settings: Settings, redis: ArqRedis) -> Pipeline:
    """An arq worker's: the rules too (its sweep plans events an API process stored but stopped before planning);
    an unreadable file (logged) leaves only the default account known until it is fixed."""
    rules = RulesInForce(settings.rules_file)
    rules.load()
    pipeline = build_pipeline(settings, create_engine(settings.database_url), rules, ArqDispatcher(redis), redis)
    # Before any run: a mirror learned under another mode is forgotten, and what other modes left is logged.
    await start_modes(pipeline.engine, pipeline.clients)
    await check_accounts(pipeline.engine, pipeline.clients, settings)
    return pipeline


async def close_pipeline(pipeline: Pipeline) -> None:
    await pipeline.clients.aclose()
    await pipeline.engine.dispose()
