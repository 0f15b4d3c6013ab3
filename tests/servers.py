"""Real HTTP servers for tests: uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class ServerThread:
    def __init__(self, app: Any, options: dict[str, Any] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # The service passes the options `systeme-flow serve` uses (app.server); others get plain uvicorn.
        options = options or {"log_config": None, "proxy_headers": False}
        config = uvicorn.Config(app, lifespan="on", access_log=False, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive():
                self.sock.close()
                raise RuntimeError("the test server failed to start; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start within 20 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@contextmanager
def alert_receiver() -> Iterator[tuple[str, list[str]]]:
    """A Slack-style incoming webhook on loopback: yields its URL and the texts it received."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    received: list[str] = []

    async def hook(request: Request) -> JSONResponse:
        received.append((await request.json())["text"])
        return JSONResponse({"ok": True})

    with ServerThread(Starlette(routes=[Route("/alert", hook, methods=["POST"])])) as server:
        yield f"{server.url}/alert", received


def in_process_worker(settings: Any, redis_url: str) -> Any:
    """An arq Worker as `systeme-flow worker` builds it (its tasks, crons, start and stop), in this process, quick to
    poll. Its cron jobs are fresh copies: arq keeps each job's next run on the CronJob object, and WorkerSettings'
    objects are shared by every Worker built in this process, so after a first test's worker a `run_at_startup` job
    would otherwise wait for its next scheduled time in the next test's."""
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from workers.settings import WorkerSettings

    return Worker(
        functions=WorkerSettings.functions,
        cron_jobs=[dataclasses.replace(job, next_run=None) for job in WorkerSettings.cron_jobs],
        on_startup=WorkerSettings.on_startup,
        on_shutdown=WorkerSettings.on_shutdown,
        redis_settings=RedisSettings.from_dsn(redis_url),
        ctx={"settings": settings},
        poll_delay=0.05,
    )
