"""Helpers for the benchmarks and scripts: free ports, servers (subprocesses, or uvicorn in a thread), the service
and the simulator started as an operator starts them, throwaway PostgreSQL databases, a bounded load loop,
percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn

from app.store.migrate import upgrade_async

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a server process (its last two args are --port N) until /healthz or / answers; yield (URL, process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *args, "--port", str(port)],
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server {args} did not start") from None
                time.sleep(0.1)
        yield url, process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # A server that does not stop must not outlive the benchmark and skew the next figures.
        process.kill()
        process.wait()


@contextmanager
def server(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Run a server process (its last two args are --port N) until /healthz or / answers; yield its URL."""
    with serving(args, env=env, cwd=cwd) as (url, _process):
        yield url


@contextmanager
def app_process(
    args: Sequence[str], env: dict[str, str], cwd: Path, *, health: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    """`systeme-flow ARGS` (`python -m app`) until `health` answers (a worker has none); stopped on the way out."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while health is not None:
            try:
                httpx.get(health, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args[0]} did not start") from None
                time.sleep(0.1)
        yield process
    finally:
        stop(process)


def service_env(cwd: Path, systeme_url: str, *, key: str, admin: str, **extra: str) -> dict[str, str]:
    """The environment of `systeme-flow serve` / `worker` / `sync` against a simulator, rules in cwd/rules.yaml.

    The caller's own MATON_API_KEY, REDIS_URL and DATABASE_URL are left out: a benchmark never reaches a real account
    or another session's stores by accident; a run names its own in `extra`.
    """
    base = {k: v for k, v in os.environ.items() if k not in ("MATON_API_KEY", "REDIS_URL", "DATABASE_URL")}
    return {
        **base,
        "SYSTEME_API_KEY": key,
        "SYSTEME_API_URL": systeme_url,
        "RULES_FILE": str(cwd / "rules.yaml"),
        "ADMIN_TOKEN": admin,
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@contextmanager
def simulator(cwd: Path, *, key: str, limit: int = 0, window: float = 60.0) -> Iterator[str]:
    """`systeme-flow simulator` on a free port, LIMIT requests per WINDOW seconds (0: no limit); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["simulator", "--api-key", key, "--rate-limit", str(limit), "--window", str(window), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k not in ("MATON_API_KEY", "REDIS_URL", "DATABASE_URL")}
    with app_process(args, {**env, "PYTHONPATH": str(ROOT)}, cwd, health=f"{url}/_sim/state"):
        yield url


@contextmanager
def api(env: dict[str, str], cwd: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`systeme-flow serve` on a free port until /healthz answers; yields (URL, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with app_process(["serve", "--port", str(port)], env, cwd, health=f"{url}/healthz") as process:
        yield url, process


@contextmanager
def workers(env: dict[str, str], cwd: Path, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """COUNT `systeme-flow worker` processes (the API has applied the migrations); all stopped on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    managers = [app_process(["worker", "--no-migrate"], env, cwd, health=None) for _ in range(count)]
    try:
        for manager in managers:
            started.append(manager.__enter__())
        yield started
    finally:
        for manager in managers[: len(started)]:
            manager.__exit__(None, None, None)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def throwaway_database() -> tuple[str, str]:
    """A new PostgreSQL database, migrated, named after TEST_DB_PREFIX; returns (SQLAlchemy URL, name)."""
    name = f"{os.environ.get('TEST_DB_PREFIX', 'sf_')}bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_admin_url())
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _admin_url().rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    await upgrade_async(url)
    return url, name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(_admin_url())
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


class InThread:
    """uvicorn in a thread on a free loopback port: the service or the simulator in this process."""

    def __init__(self, app: Any, options: dict[str, Any] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        options = options or {"log_config": None}
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", access_log=False, **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> InThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("a server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> int:
    """One HTTP/1.1 request on a kept-alive connection; returns the status."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def load(
    url: str, requests: Sequence[tuple[str, bytes, dict[str, str]]], *, concurrency: int
) -> tuple[float, list[float], dict[int, int]]:
    """POST every request with `concurrency` connections in flight; returns (seconds, latencies, status counts).

    A bare asyncio HTTP/1.1 client: a full client library would be the slowest part of the measurement.
    """
    host = url.removeprefix("http://")
    address, port = host.split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(address, int(port))
        try:
            while not queue.empty():
                path, body, headers = queue.get_nowait()
                started = time.perf_counter()
                status = await _exchange(reader, writer, host, path, body, headers)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return time.perf_counter() - started, latencies, statuses


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far: steadier than rates on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def report(name: str, seconds: float, count: int, latencies: Sequence[float] = (), cpu: float | None = None) -> float:
    rate = count / seconds
    line = f"{name:<34} {rate:9.1f}/s"
    if latencies:
        line += f"   p50 {percentile(latencies, 0.5) * 1000:6.1f} ms   p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
    if cpu is not None:
        line += f"   server CPU {cpu / count * 1e6:5.0f} µs each"
    print(line)
    return rate


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
