"""Hostile requests against `systeme-flow serve`: how long each takes to answer, and how long `/healthz` waited
meanwhile (the event loop's stall). Figures, not tests.

    python -m bench.hostile
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


async def measure(url: str, request: Request) -> tuple[int, float, float]:
    """(status, seconds to answer, longest /healthz wait while it ran)."""
    path, body, headers = request
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
        answer = await http.post(path, content=body, headers=headers)
        seconds = time.perf_counter() - started
        done.set()
        await prober
    return answer.status_code, seconds, longest


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
            print(f"{'request':<44} {'status':>6} {'answer':>10} {'/healthz max':>13}")
            for name, build in SCENARIOS.items():
                status, seconds, longest = asyncio.run(measure(url, build()))
                print(f"{name:<44} {status:>6} {seconds * 1000:>8.1f} ms {longest * 1000:>10.1f} ms")


if __name__ == "__main__":
    main()
