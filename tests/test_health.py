"""`systeme-flow health` (`python -m app.health`): the check Docker runs in every container, whatever its role."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis
from arq import Worker
from arq.connections import RedisSettings

from app.health import worker_health_key
from tests.conftest import POSTGRES_URL, running
from workers.settings import WorkerSettings

UNSET = ("MATON_API_KEY", "SYSTEME_API_KEY", "REDIS_URL", "DATABASE_URL", "RULES_FILE", "ADMIN_TOKEN")


def health(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in UNSET} | env
    return subprocess.run(
        [sys.executable, "-m", "app.health", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_api_role_follows_the_service(make_settings, sqlite_url, tmp_path):
    with running(make_settings(database_url=sqlite_url)) as url:
        for role in ("api", "auto"):
            done = health(role, "--url", f"{url}/healthz", cwd=tmp_path)
            assert (done.returncode, done.stdout) == (0, f"healthy: api: {url}/healthz answered 200\n")
    done = health("api", "--url", f"{url}/healthz", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith(f"unhealthy: api: {url}/healthz does not answer")
    assert done.stdout.count("\n") == 1 and done.stderr == ""


async def test_ready_role_is_unhealthy_while_the_database_is_down_and_alive_is_not(
    make_settings, postgres_url, tmp_path
):
    with running(make_settings(database_url=postgres_url)) as url:
        ready = await asyncio.to_thread(health, "ready", "--url", url, cwd=tmp_path)
        assert (ready.returncode, ready.stdout) == (0, f"healthy: ready: {url}/readyz answered 200\n")
        # The database goes away (dropped here, as a stopped server would refuse): webhooks would get 503.
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE "{postgres_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()
        ready = await asyncio.to_thread(health, "ready", "--url", url, cwd=tmp_path)
        alive = await asyncio.to_thread(health, "api", "--url", url, cwd=tmp_path)
    assert ready.returncode == 1
    assert ready.stdout.startswith(f"unhealthy: ready: {url}/readyz answered 503: not ready: database (")
    assert alive.returncode == 0  # alive: the process answers, which is all `api` says


def test_a_worker_role_needs_redis(tmp_path):
    done = health("worker", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "unhealthy: worker: REDIS_URL is not set, so no worker runs here\n")


async def _noop(ctx: dict[str, Any]) -> None:
    return None


async def test_each_worker_has_its_own_heartbeat(clean_redis, tmp_path):
    """Two workers on two hosts: the one that stops deletes its own heartbeat, and the other stays healthy."""
    env = {"REDIS_URL": clean_redis, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/var/db.sqlite"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "worker"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in UNSET} | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while health("worker", cwd=tmp_path, **env).returncode != 0:
            assert process.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "no heartbeat from the worker"
            time.sleep(0.2)
        # The other role's check in the same container: no API here, so `auto` falls back to the worker.
        done = health("auto", "--url", "http://127.0.0.1:9/healthz", cwd=tmp_path, **env)
        assert (done.returncode, done.stdout) == (0, f"healthy: worker: heartbeat {worker_health_key()} is fresh\n")

        other = Worker(
            functions=[_noop],
            redis_settings=RedisSettings.from_dsn(clean_redis),
            health_check_key=worker_health_key("other-host"),
            health_check_interval=WorkerSettings.health_check_interval,
            handle_signals=False,
            poll_delay=0.05,
        )
        task = asyncio.create_task(other.main())
        store = redis.Redis.from_url(clean_redis)
        while not store.exists(worker_health_key("other-host")):
            await asyncio.sleep(0.05)
        task.cancel()  # stop polling first, then close: the heartbeat key goes with the worker
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await other.close()
        assert not store.exists(worker_health_key("other-host"))
        assert health("worker", cwd=tmp_path, **env).returncode == 0  # this host's worker is untouched

        process.terminate()
        assert process.wait(timeout=30) == 0
        done = health("worker", cwd=tmp_path, **env)
        assert done.returncode == 1
        assert done.stdout == f"unhealthy: worker: no worker heartbeat at {worker_health_key()} in the last 11 s\n"
    finally:
        process.kill()
        process.wait()
