"""Redis mode: the API only enqueues; real arq workers (in-process and as a process) run the actions."""

from __future__ import annotations

import os
import subprocess
import sys

from arq import Worker
from arq.connections import RedisSettings

from tests.conftest import operator, post_stripe, running
from tests.factories import stripe_checkout
from workers.settings import WorkerSettings


async def _statuses(url: str, event_id: str) -> list[str]:
    async with operator(url) as http:
        return [a["status"] for a in (await http.get(f"/v1/events/{event_id}")).json()["actions"]]


async def test_api_enqueues_and_arq_worker_runs(make_settings, database_url, clean_redis, sim):
    settings = make_settings(database_url=database_url, redis_url=clean_redis)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("carol@example.com"))
        # Nothing runs in the API process when Redis is configured.
        assert await _statuses(url, event_id) == ["pending", "pending", "pending"]
        assert sim.contact("carol@example.com") is None

        worker = Worker(
            functions=WorkerSettings.functions,
            on_startup=WorkerSettings.on_startup,
            on_shutdown=WorkerSettings.on_shutdown,
            redis_settings=RedisSettings.from_dsn(clean_redis),
            burst=True,
            max_tries=1,
            keep_result=0,
            ctx={"settings": settings},
            poll_delay=0.05,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        # One run per event and contact: the three actions are one job.
        assert worker.jobs_failed == 0 and worker.jobs_complete == 1
        assert await _statuses(url, event_id) == ["succeeded", "succeeded", "succeeded"]
    assert sim.tag_names("carol@example.com") == ["Masterclass buyer"]
    assert len(sim.account.enrollments) == 1


async def test_worker_command_runs_pending_actions(make_settings, postgres_url, clean_redis, sim):
    settings = make_settings(database_url=postgres_url, redis_url=clean_redis)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("dan@example.com"))
        env = {
            **os.environ,
            "DATABASE_URL": postgres_url,
            "REDIS_URL": clean_redis,
            "SYSTEME_API_KEY": settings.systeme_api_key.get_secret_value(),
            "SYSTEME_API_URL": sim.url,
        }
        env.pop("MATON_API_KEY", None)
        done = subprocess.run(
            [sys.executable, "-m", "app", "worker", "--burst"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert await _statuses(url, event_id) == ["succeeded", "succeeded", "succeeded"]
        assert settings.systeme_api_key.get_secret_value() not in done.stderr
    assert sim.tag_names("dan@example.com") == ["Masterclass buyer"]
