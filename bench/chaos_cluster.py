"""The chaos run's deployment: its own PostgreSQL and Redis (so it may restart them), two simulators (two
Systeme.io accounts, each with its own key and quota), API replicas and arq workers, each a real process that can
be killed and started again. Used by bench/chaos.py and tests/test_chaos.py."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from bench.common import ROOT, free_port

KEY_A, KEY_B = "chaos-key-a", "chaos-key-b"
ADMIN = "chaos-admin"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries")
    return on_path


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def wait_until(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if callable(check) and check():
                return
        except (httpx.TransportError, OSError, redis.ConnectionError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.1)


class Postgres:
    """A throwaway cluster in `folder`, on a free loopback port; restarted with a fast shutdown."""

    def __init__(self, folder: Path) -> None:
        self.data = folder / "pgdata"
        self.log = folder / "postgres.log"
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        subprocess.run(
            _as_owner([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            _as_owner([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *args]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """A fast shutdown (open sessions are ended, nothing committed is lost), then a start."""
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


class Redis:
    """A Redis that keeps nothing on disk: a restart loses every key (the queue, the budget, the locks)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(argv, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis(port=self.port).ping(), "redis-server")

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Service:
    """One `systeme-flow` process (serve, worker or simulator), its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, name: str, health: str | None) -> None:
        self.args, self.env, self.cwd, self.name, self.health = args, env, cwd, name, health
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with (self.cwd / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", *self.args], env=self.env, cwd=self.cwd, stdout=log, stderr=log
            )
        if self.health is not None:
            url = self.health

            def answers() -> bool:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start: see {self.cwd / (self.name + '.log')}")
                return httpx.get(url, timeout=2).status_code < 500

            wait_until(answers, self.name)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, whatever was in flight is abandoned."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def rules_text(sim_b: str) -> str:
    """Three sources and two accounts: Stripe sells on account `default`, a Standard Webhooks shop on account `b`
    (a second simulator, its own key), a form subscribes on `default`. Purchases grant tag + enrollment + community;
    refunds revoke all three."""
    from tests.factories import FORM_TOKEN, PARTNER_SECRET, STRIPE_SECRET

    grant = """    actions:
      - tag: Course buyer
      - enroll: { course: 101, access: full_access }
      - add_to_community: { community: 7 }"""
    revoke = """    actions:
      - untag: Course buyer
      - unenroll: { course: 101 }
      - remove_from_community: { community: 7 }"""
    return f"""version: 1
accounts:
  b: {{ api_key: "{KEY_B}", api_url: "{sim_b}" }}
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
  shop:   {{ type: standard-webhooks, secret: "{PARTNER_SECRET}", account: b }}
  form:   {{ type: form, token: "{FORM_TOKEN}", id_field: submission_id }}
rules:
  - id: stripe-purchase
    on: stripe/checkout.session.completed
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
{grant}
  - id: stripe-refund
    on: stripe/charge.refunded
    contact: {{ email: "{{{{ event.data.object.billing_details.email }}}}" }}
{revoke}
  - id: shop-purchase
    on: shop/order.paid
    contact: {{ email: "{{{{ event.data.email }}}}" }}
{grant}
  - id: shop-refund
    on: shop/order.refunded
    contact: {{ email: "{{{{ event.data.email }}}}" }}
{revoke}
  - id: newsletter
    on: form
    contact: {{ email: "{{{{ event.email }}}}" }}
    actions: [ {{ tag: Newsletter }} ]
"""


class Cluster:
    """Everything the run starts, in `folder`: `replicas` APIs and `workers` workers on one PostgreSQL and Redis."""

    def __init__(self, folder: Path, *, replicas: int = 2, workers: int = 3, limit: int = 20, window: float = 1.0):
        self.folder = folder
        self.postgres = Postgres(folder / "pg")
        self.redis = Redis(folder)
        sim_a, sim_b = free_port(), free_port()
        self.sims = [f"http://127.0.0.1:{sim_a}", f"http://127.0.0.1:{sim_b}"]
        (folder / "rules.yaml").write_text(rules_text(self.sims[1]))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MATON_", "REDIS_", "DATABASE_", "SYSTEME_"))}
        self.env = {
            **base,
            "SYSTEME_API_KEY": KEY_A,
            "SYSTEME_API_URL": self.sims[0],
            "RULES_FILE": str(folder / "rules.yaml"),
            "ADMIN_TOKEN": ADMIN,
            "LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            # The senders stand in for the proxy in front of the replicas: the form posters' own addresses come in
            # X-Forwarded-For, as they would through Caddy.
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
        }
        quota = ["--rate-limit", str(limit), "--window", str(window)]
        self.simulators = [
            Service(["simulator", "--api-key", key, *quota, "--port", url.rsplit(":", 1)[1]], self.env, folder,
                    f"sim-{n}", f"{url}/_sim/state")
            for n, (key, url) in enumerate(zip((KEY_A, KEY_B), self.sims, strict=True))
        ]  # fmt: skip
        ports = [free_port() for _ in range(replicas)]
        self.apis = [f"http://127.0.0.1:{p}" for p in ports]
        self.replicas = [
            Service(["serve", "--no-migrate", "--port", str(p)], self.env, folder, f"api-{n}", f"{url}/healthz")
            for n, (p, url) in enumerate(zip(ports, self.apis, strict=True))
        ]
        self.workers = [
            Service(["worker", "--no-migrate"], self.env, folder, f"worker-{n}", None) for n in range(workers)
        ]

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()
        subprocess.run(
            [sys.executable, "-m", "app", "db", "upgrade"], env=self.env, cwd=self.folder, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
        for service in [*self.simulators, *self.replicas, *self.workers]:
            service.start()

    def stop(self) -> None:
        for service in [*self.workers, *self.replicas, *self.simulators]:
            service.stop()
        self.redis.stop()
        try:
            self.postgres.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
