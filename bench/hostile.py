"""Hostile requests against `systeme-flow serve`: how long each takes to answer, and how long `/healthz` waited
meanwhile (the event loop's stall); then the latency of signed webhooks while 1,000 slow connections are held
against the service, beside their latency without them. Figures, not tests.

    python -m bench.hostile [--slow 1000] [--deliveries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.common import load, percentile, server
from tests.factories import FORM_TOKEN, RULES, stripe_checkout, stripe_headers

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


# How each slow connection misbehaves, as in the issue: a head sent one header line every 5 s, a body of a
# declared 100,000 bytes sent one byte every 5 s, and a connection that sends nothing.
SLOW_EVERY = 5.0
SLOW_KINDS: dict[str, tuple[bytes, bytes | None]] = {
    "slow head": (b"POST /hooks/stripe HTTP/1.1\r\nHost: b\r\n", b"X-Slow: 1\r\n"),
    "slow body": (
        b"POST /hooks/stripe HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        b"Stripe-Signature: t=1,v1=00\r\nContent-Length: 100000\r\n\r\n",
        b"x",
    ),
    "idle": (b"", None),
}


class Attacker:
    """Holds `count` slow connections open, opening a new one whenever the service hangs up on one."""

    def __init__(self, url: str, count: int) -> None:
        parts = urlsplit(url)
        self.address, self.port = str(parts.hostname), int(parts.port or 80)
        self.count = count
        self.open = 0
        self.cut_off: dict[str, int] = dict.fromkeys(SLOW_KINDS, 0)
        self.answers: dict[str, int] = {}
        self.stopping = asyncio.Event()

    async def hold(self, kind: str) -> None:
        head, piece = SLOW_KINDS[kind]
        while not self.stopping.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.address, self.port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            self.open += 1
            try:
                writer.write(head)
                answer = asyncio.ensure_future(reader.read(64))
                while not self.stopping.is_set():
                    await asyncio.wait([answer], timeout=SLOW_EVERY)
                    if answer.done():
                        break
                    if piece is not None:
                        writer.write(piece)
                if answer.done() and not self.stopping.is_set():
                    self.cut_off[kind] += 1
                    status = answer.result().split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
                    self.answers[status] = self.answers.get(status, 0) + 1
                answer.cancel()
            except OSError:
                self.cut_off[kind] += 1
            finally:
                self.open -= 1
                writer.close()

    async def run(self) -> None:
        kinds = list(SLOW_KINDS)
        tasks = [asyncio.create_task(self.hold(kinds[i % len(kinds)])) for i in range(self.count)]
        await self.stopping.wait()
        await asyncio.gather(*tasks, return_exceptions=True)


def deliveries(count: int) -> list[Request]:
    requests = []
    for _ in range(count):
        body = json.dumps(stripe_checkout()).encode()
        requests.append(("/hooks/stripe", body, stripe_headers(body)))
    return requests


async def webhook_latency(url: str, count: int, slow: int) -> None:
    """Signed Stripe deliveries (4 at a time), alone and then with `slow` slow connections held."""
    print(f"\n{'signed Stripe deliveries':<46} {'p50':>8} {'p99':>8} {'max':>8}   answers")
    for held in (0, slow):
        attacker = Attacker(url, held)
        holding = asyncio.create_task(attacker.run())
        if held:
            while attacker.open < held * 0.95:
                await asyncio.sleep(0.1)
            await asyncio.sleep(SLOW_EVERY)  # every connection has sent its first slow piece
        _seconds, latencies, statuses = await load(url, deliveries(count), concurrency=4)
        during = attacker.open
        attacker.stopping.set()
        await holding
        name = f"with {held:,} slow connections held ({during:,} open)" if held else "alone"
        line = f"{name:<46} {percentile(latencies, 0.5) * 1000:5.1f} ms {percentile(latencies, 0.99) * 1000:5.1f} ms"
        print(f"{line} {max(latencies) * 1000:5.1f} ms   {statuses}")
        if held:
            print(f"  the service cut off {attacker.cut_off} meanwhile, answering {attacker.answers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections held at once")
    parser.add_argument("--deliveries", type=int, default=300, help="signed webhooks timed, alone and held")
    args = parser.parse_args()
    # The client holds as many sockets as the service: both need room in the open-file limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.slow + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.slow + 256), hard))
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
            asyncio.run(webhook_latency(url, args.deliveries, args.slow))


if __name__ == "__main__":
    main()
