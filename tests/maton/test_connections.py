"""`systeme-flow connections ...` against the simulator's Maton control API, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from app.maton.client import MatonClient
from app.maton.service import create_connection
from tests.clitools import run_cli
from tests.conftest import SIM_KEY


@pytest.fixture
def maton(sim, tmp_path):
    """Run `connections ...` with the simulator standing in for api.maton.ai."""

    def run(*args: str, stdin: str = "", **env: str):
        values = {"MATON_API_KEY": SIM_KEY, "MATON_CONTROL_URL": sim.url, **env}
        return run_cli("connections", *args, cwd=tmp_path, stdin=stdin, **values)

    return run


def pending(sim) -> list[dict]:
    return [c for c in sim.simulator.connections.items.values() if c["status"] == "PENDING"]


def test_create_prints_the_url_to_open_and_opening_it_makes_the_connection_active(maton, sim):
    done = maton("create")
    assert done.returncode == 0, done.stderr
    (created,) = pending(sim)
    lines = done.stdout.splitlines()
    assert lines[0] == f"created connection {created['connection_id']} (PENDING)"
    assert lines[2] == f"  {created['url']}"
    assert f"MATON_CONNECTION={created['connection_id']}" in lines[3]
    assert sim.account.calls == []  # the control API is not the Systeme.io API: nothing reached the account

    listed = maton("list")
    assert listed.returncode == 0 and listed.stdout.startswith("no ACTIVE Systeme.io connections")
    everything = maton("list", "--status", "all").stdout.splitlines()
    assert everything[0].startswith(f"{created['connection_id']}  PENDING  created ")
    assert everything[1] == f"    to finish connecting it, open {created['url']}"

    opened = httpx.get(created["url"])  # the person finishes the OAuth in a browser
    assert opened.status_code == 200
    active = json.loads(maton("list", "--json").stdout)
    assert [(c["connection_id"], c["status"], c["app"]) for c in active] == [
        (created["connection_id"], "ACTIVE", "systeme")
    ]
    shown = maton("get", created["connection_id"]).stdout.splitlines()
    assert f"connection_id: {created['connection_id']}" in shown and "status: ACTIVE" in shown


def test_list_asks_for_systeme_connections_of_the_status_given(maton, sim):
    control = sim.simulator.connections
    ids = [control.create("systeme", sim.url)["connection_id"] for _ in range(3)]
    control.set_status(ids[0], "ACTIVE")
    control.set_status(ids[1], "FAILED")
    control.create("slack", sim.url)  # another app's connection is not ours to list
    assert [c["connection_id"] for c in json.loads(maton("list", "--json").stdout)] == [ids[0]]
    failed = json.loads(maton("list", "--status", "FAILED", "--json").stdout)
    assert [c["connection_id"] for c in failed] == [ids[1]]
    assert len(json.loads(maton("list", "--status", "all", "--json").stdout)) == 3
    bad = maton("list", "--status", "BROKEN")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_delete_asks_first_unless_yes(maton, sim, tmp_path):
    control = sim.simulator.connections
    first, second = (control.create("systeme", sim.url)["connection_id"] for _ in range(2))
    (tmp_path / "rules.yaml").write_text(
        f"version: 1\naccounts:\n  school: {{ connection: {first} }}\nsources:\n  f: {{ type: form, token: t0k3n }}\n"
    )
    declined = maton("delete", first, stdin="n\n")
    assert declined.returncode == 1 and declined.stdout == "not deleted\n"
    assert f"Delete Maton connection {first} (systeme, PENDING); account 'school' uses it" in declined.stderr
    unanswered = maton("delete", first)  # no terminal, no answer: nothing is deleted
    assert unanswered.returncode == 1 and first in control.items

    agreed = maton("delete", first, stdin="y\n")
    assert (agreed.returncode, agreed.stdout) == (0, f"deleted connection {first}\n"), agreed.stderr
    forced = maton("delete", second, "--yes")
    assert forced.returncode == 0 and forced.stderr == ""  # no question asked
    assert control.items == {}
    gone = maton("delete", second, "--yes")
    assert gone.returncode == 2 and f"no connection {second}" in gone.stderr
    missing = maton("get", "../connections")  # a typed id stays one path segment
    assert missing.returncode == 2 and "no connection ../connections" in missing.stderr


def test_a_refused_or_missing_maton_key_is_one_line_with_maton_s_words(maton, tmp_path):
    refused = maton("list", MATON_API_KEY="not-the-key")
    assert refused.returncode == 2
    assert refused.stderr == "systeme-flow connections list: GET /connections answered 401: Invalid API key\n"
    unset = run_cli("connections", "create", cwd=tmp_path)
    assert unset.returncode == 2 and "needs MATON_API_KEY" in unset.stderr


async def test_a_create_answer_without_its_url_is_completed_by_reading_the_connection():
    # Maton documents the URL on the connection's own page; a create answer that lacks it is read again.
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(200, json={"connection_id": "c-1", "status": "PENDING"})
        connection = {"connection_id": "c-1", "status": "PENDING", "url": "https://connect.example/?t=1"}
        return httpx.Response(200, json={"connection": connection})

    client = MatonClient(base_url="https://maton.test", api_key="k", transport=httpx.MockTransport(answer))
    async with client:
        created = await create_connection(client)
    assert (created.id, created.url) == ("c-1", "https://connect.example/?t=1")
    assert seen == ["POST /connections", "GET /connections/c-1"]
