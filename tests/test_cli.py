"""The `systeme-flow` command as a user runs it: check, db upgrade, serve (embedded, dry run), settings errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SIM_KEY
from tests.factories import FORM_TOKEN, write_rules

SECRET_VARS = ("MATON_API_KEY", "SYSTEME_API_KEY", "REDIS_URL", "DATABASE_URL", "RULES_FILE", "ADMIN_TOKEN")


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env.update(values)
    return env


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=60
    )


def test_check_accepts_a_valid_file(tmp_path):
    done = cli("check", str(write_rules(tmp_path)), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "6 rules, 5 sources: OK\n")


def test_check_lists_every_problem_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nsources:\n  s: { type: stripe, secret: '${NOT_SET_ANYWHERE}' }\nrules:\n  - { id: a, on: t, actions: [{x: 1}] }\n"
    )
    done = cli("check", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{bad}:3:30: source 's': environment variable NOT_SET_ANYWHERE is not set",
        f"{bad}:5:31: rule 'a': unknown action `x` (known: tag, untag, enroll, unenroll, add_to_community, remove_from_community, update_contact, cancel_subscription)",
        f"{bad}:5:18: rule 'a': `on: t` names an unknown source",
    ]


def test_check_reads_rules_file_setting_and_dotenv(tmp_path):
    (tmp_path / "custom.yaml").write_text("version: 1\nsources:\n  f: { type: form, token: '${TOKEN_FROM_DOTENV}' }\n")
    (tmp_path / ".env").write_text("RULES_FILE=custom.yaml\nTOKEN_FROM_DOTENV=abc\n")
    done = cli("check", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "0 rules, 1 sources: OK\n")


def test_db_upgrade_creates_the_sqlite_folder(tmp_path):
    done = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL="sqlite+aiosqlite:///./deep/er/db.sqlite")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "deep" / "er" / "db.sqlite").exists()


def test_both_api_keys_refuse_to_start_without_leaking_them(tmp_path):
    done = cli("serve", cwd=tmp_path, MATON_API_KEY="mk-very-secret", SYSTEME_API_KEY="sk-very-secret")
    assert done.returncode != 0
    assert "keep one" in done.stderr
    assert "very-secret" not in done.stderr + done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(tmp_path, sim):
    """`systeme-flow serve` on the embedded defaults, with no API key (dry run)."""
    url, process = start_serve(tmp_path, ADMIN_TOKEN="admin-secret-token", SYSTEME_API_URL=sim.url, LOG_FORMAT="json")
    yield url, process, tmp_path
    process.terminate()
    process.communicate(timeout=20)


def start_serve(folder: Path, **env: str) -> tuple[str, subprocess.Popen[str]]:
    write_rules(folder)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=folder,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)
    return url, process


def test_serve_runs_dry_without_api_key_and_keeps_tokens_out_of_logs(serve, sim):
    url, process, folder = serve
    answer = httpx.post(f"{url}/hooks/signup?token={FORM_TOKEN}", data={"email": "dry@example.com"})
    assert answer.status_code == 303
    admin = {"Authorization": "Bearer admin-secret-token"}
    (listed,) = httpx.get(f"{url}/v1/events", headers=admin).json()["items"]
    event = httpx.get(f"{url}/v1/events/{listed['id']}", headers=admin).json()
    assert [(a["kind"], a["status"]) for a in event["actions"]] == [("tag", "skipped")]
    assert "dry run" in event["actions"][0]["last_error"]
    assert event["payload"] == {"email": "dry@example.com"}
    assert "x-webhook-token" not in event["headers"]
    assert httpx.get(f"{url}/readyz").json()["checks"]["mode"]["api"] == "dry-run"
    assert sim.account.calls == []  # a dry run never calls out
    assert (folder / "var" / "systeme-flow.db").exists()
    process.terminate()
    output = process.communicate(timeout=20)[0]
    assert "DRY RUN" in output
    assert "/hooks/signup?token=***" in output  # the access log line, scrubbed
    assert FORM_TOKEN not in output and "admin-secret-token" not in output


def test_api_calls_are_logged_without_their_query(tmp_path, sim):
    """`forget` cannot reach log files: an address must never be written there, e.g. in `?email=`."""
    url, process = start_serve(tmp_path, SYSTEME_API_KEY=SIM_KEY, SYSTEME_API_URL=sim.url, LOG_FORMAT="json")
    try:
        answer = httpx.post(f"{url}/hooks/signup?token={FORM_TOKEN}", data={"email": "hidden.person@example.com"})
        assert answer.status_code == 303
        deadline = time.monotonic() + 30
        while "Newsletter" not in sim.tag_names("hidden.person@example.com"):
            assert time.monotonic() < deadline, "the action did not run"
            time.sleep(0.1)
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "GET /api/contacts answered 200" in output
    assert "hidden.person" not in output and "example.com" not in output
