"""Is this container's process alive? The image's HEALTHCHECK runs `python -m app.health` (`systeme-flow health`).

One image serves both roles, so the check must not assume one: the API is alive when its `/healthz` answers, a
worker when its heartbeat key is in Redis. Alive is not ready: `ready` asks the API's `/readyz`, which answers 503
while its database (or Redis) does not, so a container checked with it is unhealthy while webhooks would get 503
(what compose uses for the api, and what a load balancer wants). Each worker writes its own key, named after its
host (a container's hostname is its id), so a worker that stops deletes only its own and leaves its siblings
healthy.
Kept to light imports: Docker runs it every few seconds in every container.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

import redis
from pydantic import ValidationError

from app.config import SERVICE_URL, Settings, settings_problems

# arq rewrites the key this often and lets it expire one second after that: a stuck worker turns unhealthy quickly.
WORKER_HEARTBEAT_SECONDS = 10
TIMEOUT_SECONDS = 2.0


def worker_health_key(host: str | None = None) -> str:
    return f"systeme-flow:worker-health:{host or socket.gethostname()}"


def unreachable_hint() -> str:
    """What to do when the service does not answer where a command looked for it."""
    return (
        "is `systeme-flow serve` running there? Another address: --url or SYSTEME_FLOW_URL, "
        "e.g. http://127.0.0.1:8001 for `make run PORT=8001`"
    )


def health_url(url: str) -> str:
    """The service's address, or its /healthz URL as given before: /healthz is added once."""
    url = url.rstrip("/")
    return url if url.endswith("/healthz") else f"{url}/healthz"


def api_alive(url: str) -> str | None:
    """None when the API answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} does not answer ({getattr(exc, 'reason', exc)}): {unreachable_hint()}"


def ready_url(url: str) -> str:
    """The service's /readyz, from its address or its /healthz URL."""
    return f"{health_url(url).removesuffix('/healthz')}/readyz"


def api_ready(url: str) -> str | None:
    """None when the API answers /readyz 200 (its database and Redis answer it), else which checks failed."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except urllib.error.HTTPError as exc:
        try:
            checks = json.loads(exc.read())["checks"]
            failing = [f"{name} ({c.get('error', 'not ok')})" for name, c in checks.items() if not c.get("ok")]
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            failing = []
        return f"{url} answered {exc.code}" + (f": not ready: {', '.join(failing)}" if failing else "")
    except (OSError, ValueError) as exc:
        return f"{url} does not answer ({getattr(exc, 'reason', exc)}): {unreachable_hint()}"


def worker_alive(redis_url: str | None, host: str | None = None) -> str | None:
    """None when this host's worker heartbeat is in Redis, else why not."""
    if not redis_url:
        return "REDIS_URL is not set, so no worker runs here"
    key = worker_health_key(host)
    client = redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
    try:
        found = client.exists(key)
    except redis.RedisError as exc:
        return f"Redis does not answer ({exc})"
    finally:
        client.close()
    return None if found else f"no worker heartbeat at {key} in the last {WORKER_HEARTBEAT_SECONDS + 1} s"


def check(role: str, url: str, redis_url: str | None) -> tuple[bool, str]:
    """(healthy, one line saying why). `auto`: the API, or failing that this host's worker."""
    problems: list[str] = []
    if role == "ready":
        problem = api_ready(ready_url(url))
        return (True, f"ready: {ready_url(url)} answered 200") if problem is None else (False, f"ready: {problem}")
    if role in ("api", "auto"):
        problem = api_alive(url)
        if problem is None:
            return True, f"api: {url} answered 200"
        problems.append(f"api: {problem}")
    if role in ("worker", "auto"):
        problem = worker_alive(redis_url)
        if problem is None:
            return True, f"worker: heartbeat {worker_health_key()} is fresh"
        problems.append(f"worker: {problem}")
    return False, "; ".join(problems)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "role",
        nargs="?",
        choices=("auto", "api", "worker", "ready"),
        default="auto",
        help="what to check: alive (api, worker, auto: either) or ready (the api and its database)",
    )
    parser.add_argument("--url", help=f"the service, /healthz is added (default: SYSTEME_FLOW_URL, else {SERVICE_URL})")


def run(args: argparse.Namespace) -> None:
    """Exit 0 when healthy, 1 when not (Docker's convention), with one line on stdout either way."""
    try:
        settings = Settings() if args.role not in ("api", "ready") or not args.url else None
    except ValidationError as exc:
        sys.exit(f"unhealthy: invalid settings: {'; '.join(settings_problems(exc))}")
    redis_url = settings.redis_url if settings is not None and args.role not in ("api", "ready") else None
    url = health_url(args.url or (settings.systeme_flow_url if settings is not None else SERVICE_URL))
    healthy, why = check(args.role, url, redis_url)
    sys.stdout.write(f"{'healthy' if healthy else 'unhealthy'}: {why}\n")
    sys.exit(0 if healthy else 1)


def main(argv: Sequence[str] | None = None) -> None:
    about = "Is this API or worker alive, or the API ready?"
    parser = argparse.ArgumentParser(prog="python -m app.health", description=about)
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
