"""Hostile requests against `systeme-flow serve`: how long each takes to answer, and how long `/healthz` waited
meanwhile (the event loop's stall). Figures, not tests.

    python -m bench.hostile
"""

from __future__ import annotations

import asyncio
import functools
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.common import server
from tests.factories import FORM_TOKEN, RULES

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
Request = tuple[str, bytes, dict[str, str]]


def many_fields(count: int, token: str | None) -> Request:
    path = "/hooks/signup" + (f"?token={token}" if token else "")
    return path, "&".join(["a=1"] * count).encode(), FORM


SCENARIOS: dict[str, Callable[[], Request]] = {
    "100,000 form fields, no token": lambda: many_fields(100_000, None),
    "100,000 form fields, right token": lambda: many_fields(100_000, FORM_TOKEN),
    "250,000 form fields, right token": lambda: many_fields(250_000, FORM_TOKEN),
}


def huge_head(url: str, head: bytes, filler: bytes, total: int) -> str:
    """Send a request head growing to `total` bytes on a raw socket; what came back, or how the server hung up."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        try:
            sock.sendall(head)
            while sent < total:
                sock.sendall(filler)
                sent += len(filler)
            sock.sendall(b"\r\n\r\n")
            answer = sock.recv(64).split(b"\r\n", 1)[0].decode()
        except OSError as exc:
            return f"cut off after {sent / 1e6:.1f} MB ({type(exc).__name__})"
    return f"{answer} after {sent / 1e6:.1f} MB"


HEADS: dict[str, tuple[bytes, bytes, int]] = {
    "64 MB header": (b"POST /hooks/stripe HTTP/1.1\r\nHost: b\r\nX-Big: ", b"a" * 65_536, 64 * 1024 * 1024),
    "Stripe-Signature with 1,000,000 v1= entries": (
        b"POST /hooks/stripe HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nStripe-Signature: t=1",
        b",v1=00" * 10_000,
        6_000_000,
    ),
}


async def measure(url: str, request: Request | Callable[[], str]) -> tuple[str, float, float]:
    """(answer, seconds to answer, longest /healthz wait while it ran)."""
    longest = 0.0
    done = asyncio.Event()

    async def probe() -> None:
        nonlocal longest
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while not done.is_set():
                started = time.perf_counter()
                await http.get("/healthz")
                longest = max(longest, time.perf_counter() - started)
                await asyncio.sleep(0.005)

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        if callable(request):
            answer = await asyncio.to_thread(request)
        else:
            path, body, headers = request
            answer = str((await http.post(path, content=body, headers=headers)).status_code)
        seconds = time.perf_counter() - started
        done.set()
        await prober
    return answer, seconds, longest


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "rules.yaml").write_text(RULES)
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/bench.db",
            "RULES_FILE": str(Path(folder) / "rules.yaml"),
            "LOG_FORMAT": "json",
            "PYTHONWARNINGS": "ignore",
        }
        with server(["-m", "app", "serve"], env=env, cwd=Path(folder)) as url:
            print(f"{'request':<46} {'time':>10} {'/healthz max':>13}   answer")
            for name, build in SCENARIOS.items():
                answer, seconds, longest = asyncio.run(measure(url, build()))
                print(f"{name:<46} {seconds * 1000:>7.1f} ms {longest * 1000:>10.1f} ms   {answer}")
            for name, (head, filler, total) in HEADS.items():
                send = functools.partial(huge_head, url, head, filler, total)
                answer, seconds, longest = asyncio.run(measure(url, send))
                print(f"{name:<46} {seconds * 1000:>7.1f} ms {longest * 1000:>10.1f} ms   {answer}")


if __name__ == "__main__":
    main()
