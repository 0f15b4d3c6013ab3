"""Redis mode: the API only enqueues; real arq workers (in-process and as a process) run the actions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from arq import Worker
from arq.connections import RedisSettings

from tests.conftest import planned, post_stripe, running, wait_for
from tests.factories import stripe_checkout
from workers.settings import WorkerSettings


async def _statuses(url: str, event_id: str) -> list[str]:
    return [a["status"] for a in (await planned(url, event_id))["actions"]]


async def test_api_enqueues_and_arq_worker_runs(make_settings, database_url, clean_redis, sim):
    settings = make_settings(database_url=database_url, redis_url=clean_redis)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("carol@yopmail.com"))
        # Nothing runs in the API process when Redis is configured.
        assert await _statuses(url, event_id) == ["pending", "pending", "pending"]
        assert sim.contact("carol@yopmail.com") is None

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
    assert sim.tag_names("carol@yopmail.com") == ["Masterclass buyer"]
    assert len(sim.account.enrollments) == 1


async def test_worker_command_runs_pending_actions(make_settings, postgres_url, clean_redis, sim):
    settings = make_settings(database_url=postgres_url, redis_url=clean_redis)
    with running(settings) as url:
        event_id = await post_stripe(url, stripe_checkout("dan@yopmail.com"))
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
    assert sim.tag_names("dan@yopmail.com") == ["Masterclass buyer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _own_redis(port: int) -> Iterator[None]:
    """A redis-server of this test's own on `port`: the shared one must never be stopped."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_worker_command_outlives_redis_outages(make_settings, sqlite_url, sim):
    port = _free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    settings = make_settings(database_url=sqlite_url, redis_url=redis_url)
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_url,
        "REDIS_URL": redis_url,
        "SYSTEME_API_KEY": settings.systeme_api_key.get_secret_value(),
        "SYSTEME_API_URL": sim.url,
        "LOG_FORMAT": "json",
    }
    env.pop("MATON_API_KEY", None)
    worker = subprocess.Popen(
        [sys.executable, "-m", "app", "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = worker.stdout
    assert output is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(output.readline, "")), daemon=True)
    reader.start()

    def outages() -> int:
        return sum("Redis is unavailable" in line for line in lines)

    try:
        # Nothing listens on the port yet: the worker waits for Redis instead of exiting.
        await wait_for(lambda: outages() >= 1, timeout=30)
        assert worker.poll() is None, "".join(lines)
        for n, email in enumerate(["first@yopmail.com", "second@yopmail.com"]):
            with _own_redis(port), running(settings) as url:
                event_id = await post_stripe(url, stripe_checkout(email))
                await wait_for(lambda: sim.tag_names(email) == ["Masterclass buyer"], timeout=60)  # noqa: B023
                assert len(await _statuses(url, event_id)) == 3
            # Redis went away under a running worker: it waits again.
            await wait_for(lambda: outages() >= n + 2, timeout=30)  # noqa: B023
            assert worker.poll() is None, "".join(lines)
        # Stopping it while it waits for Redis is immediate.
        worker.terminate()
        worker.wait(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        reader.join(timeout=10)
        output.close()
