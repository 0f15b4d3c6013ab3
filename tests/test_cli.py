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

from app.config import setting_source
from tests.clitools import cli, cli_env, free_port
from tests.conftest import DB_PREFIX, SIM_KEY
from tests.factories import FORM_TOKEN, write_rules


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
        f"{bad}:5:18: rule 'a': `on: t` names an unknown source",
        f"{bad}:5:31: rule 'a': unknown action `x` (known: tag, untag, enroll, unenroll, add_to_community, remove_from_community, update_contact, cancel_subscription, cancel_scheduled, delete_contact)",
    ]


def test_check_reports_every_problem_of_every_rule_in_one_run_in_line_order(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\n"
        "sources:\n"
        "  s: { type: form, token: abc }\n"
        "rules:\n"
        "  - id: a\n"
        "    on: s\n"
        "    contact: { email: '{{ event.email | lower }' }\n"
        "    actions:\n"
        "      - tagg: X\n"
        "      - tag: '{{ event.x }'\n"
        "  - id: b\n"
        "    on: s\n"
        "    if: 'event.a =='\n"
        "    unless_tagged: '{% if %}'\n"
        "    actions: [ { tagx: Y } ]\n"
        "  - id: c\n"
        "    on: { s: 1 }\n"
        "    actions: [ { tag: Z } ]\n"
    )
    done = cli("check", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    found = [line.removeprefix(f"{bad}:") for line in done.stdout.splitlines()]
    assert [line.split(": ", 2)[:2] for line in found] == [
        ["7:23", "rule 'a'"],  # the contact's template
        ["9:9", "rule 'a'"],  # the unknown action
        ["10:14", "rule 'a'"],  # the action's template
        ["11:5", "rule 'b'"],  # unless_tagged without a contact
        ["13:9", "rule 'b'"],  # the `if`
        ["14:20", "rule 'b'"],  # the unless_tagged template
        ["15:16", "rule 'b'"],  # the unknown action
        ["16:5", "rule 'c'"],  # a tag action without `contact`, although `on` is broken too
        ["17:9", "rule 'c'"],  # `on` is not a string or a list
    ]
    assert "invalid template '{{ event.email | lower }'" in found[0] and "unknown action `tagg`" in found[1]
    assert "invalid `if` expression" in found[4] and "has no `contact`" in found[7]


def test_check_reads_rules_file_setting_and_dotenv(tmp_path):
    (tmp_path / "custom.yaml").write_text("version: 1\nsources:\n  f: { type: form, token: '${TOKEN_FROM_DOTENV}' }\n")
    (tmp_path / ".env").write_text("RULES_FILE=custom.yaml\nTOKEN_FROM_DOTENV=abc\n")
    done = cli("check", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "0 rules, 1 source: OK\n")


def test_db_upgrade_creates_the_sqlite_folder(tmp_path):
    done = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL="sqlite+aiosqlite:///./deep/er/db.sqlite")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "deep" / "er" / "db.sqlite").exists()


def test_both_api_keys_refuse_to_start_without_leaking_them(tmp_path):
    done = cli("serve", cwd=tmp_path, MATON_API_KEY="mk-very-secret", SYSTEME_API_KEY="sk-very-secret")
    assert done.returncode != 0
    assert "keep one" in done.stderr
    assert "very-secret" not in done.stderr + done.stdout


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
    answer = httpx.post(f"{url}/hooks/signup?token={FORM_TOKEN}", data={"email": "dry@yopmail.com"})
    assert answer.status_code == 303
    admin = {"Authorization": "Bearer admin-secret-token"}
    (listed,) = httpx.get(f"{url}/v1/events", headers=admin).json()["items"]
    deadline = time.monotonic() + 15
    while True:  # planned as pending; the executor decides, when it runs, that the run is dry
        event = httpx.get(f"{url}/v1/events/{listed['id']}", headers=admin).json()
        if (event["actions"] and event["actions"][0]["status"] != "pending") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(a["kind"], a["status"]) for a in event["actions"]] == [("tag", "skipped")]
    assert "dry run" in event["actions"][0]["outcome"]
    assert event["payload"] == {"email": "dry@yopmail.com"}
    assert "x-webhook-token" not in event["headers"]
    assert httpx.get(f"{url}/readyz").json()["checks"]["mode"]["api"] == "dry-run"
    home = httpx.get(f"{url}/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (307, "/ui")
    assert sim.account.calls == []  # a dry run never calls out
    assert (folder / "var" / "systeme-flow.db").exists()
    process.terminate()
    output = process.communicate(timeout=20)[0]
    assert "DRY RUN" in output
    # What a person needs first: where the dashboard is, which account, where the token is (not the token).
    assert f"dashboard: {url}/ui  sign in with ADMIN_TOKEN (from the environment)" in output
    assert "account:   dry run: no MATON_API_KEY or SYSTEME_API_KEY" in output
    assert "alembic.runtime.plugins" not in output
    assert "/hooks/signup?token=***" in output  # the access log line, scrubbed
    assert FORM_TOKEN not in output and "admin-secret-token" not in output


def test_an_unwritable_database_folder_is_one_line_not_a_traceback(tmp_path):
    """As in a container whose /srv/var is a root-owned bind mount while the service runs unprivileged."""
    folder = tmp_path / "var"
    folder.mkdir()
    folder.chmod(0o555)
    url = f"sqlite+aiosqlite:///{folder}/systeme-flow.db"
    # root writes anywhere; without the capabilities that let it, it is held to the folder's mode like anyone.
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    for command in (["serve"], ["worker"], ["db", "upgrade"]):
        done = subprocess.run(
            [*unprivileged, sys.executable, "-m", "app", *command],
            cwd=tmp_path,
            env=cli_env(DATABASE_URL=url, RULES_FILE=str(write_rules(tmp_path)), REDIS_URL="redis://127.0.0.1:1/0"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.endswith(
            f"systeme-flow: {folder} is not writable by user {os.getuid()}: give it to that user, mount a volume "
            "there, or set DATABASE_URL\n"
        )
        assert "Traceback" not in done.stderr
    assert list(folder.iterdir()) == []


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2, one line on stderr that says what, and no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def test_explain_says_json_syntax_error_and_missing_file(tmp_path):
    write_rules(tmp_path)
    (tmp_path / "broken.json").write_text('{"type": "checkout.session.completed",\n  "data": {,}}\n')
    one_line_error(
        cli("explain", "--source", "stripe", "broken.json", cwd=tmp_path),
        "broken.json: JSON syntax error: Expecting property name enclosed in double quotes at line 2 column 12",
    )
    # json's own message ends in "at" here: the position follows it, once.
    (tmp_path / "tab.json").write_text('{"type": "a\tb"}')
    done = cli("explain", "--source", "stripe", "tab.json", cwd=tmp_path)
    one_line_error(done, "tab.json: JSON syntax error: Invalid control character at line 1 column 12")
    assert done.stderr.rstrip().endswith("line 1 column 12"), done.stderr
    one_line_error(cli("explain", "--source", "stripe", "nowhere.json", cwd=tmp_path), "cannot read nowhere.json")
    one_line_error(cli("explain", "--source", "nope", "broken.json", cwd=tmp_path), "no source 'nope'")


def test_operator_commands_refuse_bad_arguments_in_one_line(tmp_path):
    one_line_error(cli("events", "--since", "yesterday", cwd=tmp_path), "'yesterday': use a duration like 7d")
    done = cli("events", "--status", "bogus", cwd=tmp_path)
    one_line_error(done, "invalid choice: 'bogus'", "'awaiting_approval'", "'dead'")
    one_line_error(cli("actions", "--status", "nope", cwd=tmp_path), "'succeeded'")


def test_database_errors_are_one_line_and_hide_the_password(tmp_path):
    one_line_error(
        cli("events", cwd=tmp_path, DATABASE_URL="postgresql://me:hunter2-secret@127.0.0.1:1/x"),
        "systeme-flow events: database error:",
    )
    done = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL="postgresql://me:hunter2-secret@127.0.0.1:1/x")
    one_line_error(done, "systeme-flow db upgrade: database error")
    assert "hunter2" not in done.stderr
    # A database that was never migrated says what to do.
    one_line_error(
        cli("events", cwd=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/empty.db"), "run `systeme-flow db upgrade`"
    )


async def test_plain_postgresql_urls_use_the_async_driver(tmp_path, postgres_url):
    assert postgres_url.rsplit("/", 1)[1].startswith(DB_PREFIX)  # TEST_DB_PREFIX names the throwaway databases
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    done = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL=plain)
    assert done.returncode == 0, done.stderr
    short = postgres_url.replace("postgresql+asyncpg://", "postgres://")
    done = cli("events", "--json", cwd=tmp_path, DATABASE_URL=short)
    assert done.returncode == 0, done.stderr
    assert '"items": []' in done.stdout


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "schema"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `| head` that has read what it wanted
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr == ""


def test_migrations_do_not_announce_alembic_plugins(tmp_path):
    done = cli("db", "upgrade", cwd=tmp_path, DATABASE_URL="sqlite:///./var/db.sqlite", LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    assert "Running upgrade" in done.stderr
    assert "alembic.runtime.plugins" not in done.stderr


def test_setting_source_names_where_a_setting_is_never_its_value(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("SF_ONLY_IN_FILE=abc\n")
    assert setting_source("SF_ONLY_IN_FILE", str(env_file)) == str(env_file)
    monkeypatch.setenv("SF_ONLY_IN_FILE", "xyz")
    assert setting_source("SF_ONLY_IN_FILE", str(env_file)) == "the environment"
    assert setting_source("SF_NOWHERE", str(env_file)) is None


def test_api_calls_are_logged_without_their_query(tmp_path, sim):
    """`forget` cannot reach log files: an address must never be written there, e.g. in `?email=`."""
    url, process = start_serve(tmp_path, SYSTEME_API_KEY=SIM_KEY, SYSTEME_API_URL=sim.url, LOG_FORMAT="json")
    try:
        answer = httpx.post(f"{url}/hooks/signup?token={FORM_TOKEN}", data={"email": "hidden.person@yopmail.com"})
        assert answer.status_code == 303
        deadline = time.monotonic() + 30
        while "Newsletter" not in sim.tag_names("hidden.person@yopmail.com"):
            assert time.monotonic() < deadline, "the action did not run"
            time.sleep(0.1)
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "GET /api/contacts answered 200" in output
    assert "hidden.person" not in output and "example.com" not in output


def test_serve_on_a_taken_port_says_so_before_announcing_it(tmp_path):
    rules = write_rules(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--port", str(port), cwd=tmp_path, RULES_FILE=str(rules))
    assert done.returncode == 2 and "serving" not in done.stdout
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "--port" in done.stderr


def test_the_simulator_on_a_taken_port_says_so_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("simulator", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 2 and "Errno" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr == (
        f"systeme-flow simulator: cannot listen on 127.0.0.1:{port}: Address already in use (another simulator?): "
        "stop it, or pick another with --port (make simulator SIM_PORT=...)\n"
    )


def test_make_simulator_takes_sim_port():
    root = Path(__file__).parent.parent
    done = subprocess.run(
        ["make", "-n", "simulator", "SIM_PORT=9123"],
        cwd=root, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "systeme-flow simulator --port 9123 " in done.stdout


def test_a_missing_rules_file_says_where_one_comes_from(tmp_path):
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("rules.yaml:1:1: cannot read the rules file: No such file or directory")
    assert "RULES_FILE" in done.stdout and "systeme-flow init" in done.stdout


def test_a_command_run_away_from_the_service_names_the_empty_database(tmp_path):
    done = cli("events", cwd=tmp_path)
    assert done.returncode == 2
    database = tmp_path.resolve() / "var" / "systeme-flow.db"
    assert f"the database {database} has no tables: run `systeme-flow db upgrade` first" in done.stderr
    assert "where `serve` runs" in done.stderr
