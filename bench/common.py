"""Helpers for the benchmarks: free ports, subprocess servers, a bounded load loop, percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

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
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # A server that does not stop must not outlive the benchmark and skew the next figures.
            process.kill()
            process.wait()


@contextmanager
def server(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Run a server process (its last two args are --port N) until /healthz or / answers; yield its URL."""
    with serving(args, env=env, cwd=cwd) as (url, _process):
        yield url


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
