"""Where the CPU of one ingested event goes: py-spy samples `systeme-flow serve` under bench/ingest.py's load.

    pip install py-spy   # into the same virtual environment; it reads the server's memory, so run as root
    python -m bench.ingest_profile [--events 3000] [--database-url URL] [--svg profile.svg]

Prints, per part of the request path, the share of the server's CPU samples and the CPU time per event. Each
sample is given to the first part (in the order of PARTS) that any of its frames belongs to.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import load, report, serving
from bench.ingest import service_env, signed_events

# (part, substrings of a frame "function (file:line)"): the first part any frame matches takes the sample.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("actions executor (dry run, in-process)", ("app/actions/", "app/pipeline/dispatch.py", "app/pipeline/upkeep.py")),
    ("email validation", ("email_validator/",)),
    ("rules planning (Jinja)", ("app/rules/", "jinja2/")),
    ("signature", ("verify_hmac", "check_signature", "check_fresh", "timestamped_signatures")),
    ("JSON-safe payload pass (storable)", ("app/store/storable.py",)),
    ("JSON parsing", ("parse_json_object", "json_loads")),
    ("log lines", ("logging/", "app/logs.py")),
    ("metrics", ("prometheus_client/",)),
    ("the commit", ("commit (", "_commit_impl", "_commit (")),
    ("SQLite itself (aiosqlite's thread)", ("_connection_worker_thread",)),
    # Statements run in SQLAlchemy's greenlets show no caller: the executor's and ingest's alike.
    ("SQL building, binding, executing", ("sqlalchemy/", "aiosqlite/", "asyncpg/", "app/store/")),
    ("header and query copying", ("<dictcomp> (app/", "build_delivery", "_stored_headers", "query_params")),
    ("response", ("starlette/responses.py", "fastapi/responses.py", "json/encoder.py", "orjson")),
    ("request body", ("read_body", "starlette/requests.py")),
    (
        "routing and dependency injection",
        ("fastapi/routing.py", "fastapi/dependencies/", "starlette/routing.py", "starlette/middleware/"),
    ),
    ("rest of ingest (app/webhooks, app/sources)", ("app/webhooks/", "app/sources/")),
    ("HTTP server (uvicorn)", ("uvicorn/",)),
    ("event loop (asyncio)", ("asyncio/",)),
]


def part_of(stack: str) -> str:
    for name, needles in PARTS:
        if any(needle in stack for needle in needles):
            return name
    return "other"


def summarise(raw: Path, events: int, rate: int) -> None:
    samples: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[part_of(stack)] += int(count)
    total = sum(samples.values())
    print(f"\n{'part of the request path':<46} {'share':>6} {'CPU/event':>10}")
    for name, share in samples.most_common():
        print(f"{name:<46} {share / total:6.1%} {share / rate / events * 1e6:8.0f} µs")
    print(f"{'total (CPU of every thread)':<46} {1:6.0%} {total / rate / events * 1e6:8.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", default=None, help="enqueue actions to arq here instead of running them")
    parser.add_argument("--svg", default=None, help="also write a flame graph here (a second, separate run)")
    parser.add_argument("--raw", default=None, help="keep the collapsed stacks here")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")

    with tempfile.TemporaryDirectory() as folder:
        env = service_env(Path(folder), args.database_url, args.redis_url)
        requests, warmup = signed_events(args.events), signed_events(200)
        raw = Path(folder) / "profile.txt"
        runs = [("raw", raw)] + ([("flamegraph", Path(args.svg).resolve())] if args.svg else [])
        for form, output in runs:
            with serving(["-m", "app", "serve"], env=env, cwd=Path(folder)) as (url, process):
                asyncio.run(load(url, warmup, concurrency=args.concurrency))
                command = [spy, "record", "--format", form, "-o", str(output), "--rate", str(args.rate)]
                recorder = subprocess.Popen([*command, "--pid", str(process.pid)], stdout=subprocess.DEVNULL)
                seconds, latencies, _ = asyncio.run(load(url, requests, concurrency=args.concurrency))
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=60)
            if form == "raw":
                report("systeme-flow under py-spy", seconds, len(requests), latencies)
        summarise(raw, len(requests), args.rate)
        if args.raw:
            shutil.copy(raw, args.raw)


if __name__ == "__main__":
    main()
