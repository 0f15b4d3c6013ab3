"""`systeme-flow connect` and `webhooks list | delete` against the simulator's /api/webhooks, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from app.simulator import Simulator
from tests.clitools import run_cli
from tests.conftest import SIM_KEY
from tests.factories import RULES, SYSTEME_SECRET, write_rules
from tests.servers import ServerThread

HOST = "https://flow.example.com"


@pytest.fixture
def flow(sim, tmp_path):
    """Run a command in a folder with the test rules, against the simulator's account."""
    write_rules(tmp_path)

    def run(*args: str, stdin: str = "", **env: str):
        values = {"SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url, **env}
        return run_cli(*args, cwd=tmp_path, stdin=stdin, **values)

    return run


def writes(sim) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in sim.account.calls if c["method"] != "GET"]


def test_connect_registers_one_webhook_then_a_second_run_changes_nothing(flow, sim):
    done = flow("connect", "--url", HOST + "/")
    assert done.returncode == 0, done.stderr
    (hook,) = sim.account.webhooks.values()
    assert (hook["url"], hook["secret"], hook["active"]) == (f"{HOST}/hooks/systeme", SYSTEME_SECRET, True)
    assert [(s["event"], s["schemaVersion"]) for s in hook["subscriptions"]] == [("SALE_NEW", 2)]
    assert hook["name"].startswith("systeme-flow systeme [") and SYSTEME_SECRET not in hook["name"]
    assert done.stdout.splitlines() == [
        f"created webhook {hook['id']} in account 'default': SALE_NEW -> {HOST}/hooks/systeme",
        "1 webhook changed",
    ]
    before = writes(sim)

    again = flow("connect", "--url", HOST)
    assert again.returncode == 0
    assert again.stdout.splitlines() == [
        f"unchanged: webhook {hook['id']} in account 'default' already sends SALE_NEW to {HOST}/hooks/systeme",
        "nothing changed",
    ]
    assert writes(sim) == before == [("POST", "/api/webhooks")]
    assert len(sim.account.webhooks) == 1


def test_connect_updates_events_secret_and_disabled_subscriptions_in_place(flow, sim, tmp_path):
    assert flow("connect", "--url", HOST).returncode == 0
    (hook,) = sim.account.webhooks.values()
    rules = RULES.replace(f'secret: "{SYSTEME_SECRET}"', 'secret: ["rotated-secret", "systeme-secret"]')
    rules += "  - { id: refunds, on: systeme/SALE_CANCELED, actions: [ { cancel_subscription: 1 } ] }\n"
    write_rules(tmp_path, rules)
    done = flow("connect", "--url", HOST)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"updated webhook {hook['id']} in account 'default' (secret, events): SALE_NEW, SALE_CANCELED -> "
        f"{HOST}/hooks/systeme (was SALE_NEW)"
    )
    assert hook["secret"] == "rotated-secret"  # the first of a rotation's list
    assert [s["event"] for s in hook["subscriptions"]] == ["SALE_NEW", "SALE_CANCELED"]
    assert writes(sim)[-1] == ("PATCH", f"/api/webhooks/{hook['id']}")

    # Systeme.io disables a subscription whose deliveries fail too often; connect turns it back on.
    hook["subscriptions"][1].update(disabledAt="2026-11-20T10:00:00+00:00", disabledReason="BAD_SUCCESS_RATE")
    listed = flow("webhooks", "list")
    assert listed.stdout.splitlines() == [
        f"{hook['id']}  active    {HOST}/hooks/systeme  SALE_NEW, SALE_CANCELED (disabled: BAD_SUCCESS_RATE)  "
        f"'{hook['name']}'"
    ]
    revived = flow("connect", "--url", HOST)
    assert "(events): SALE_NEW, SALE_CANCELED" in revived.stdout and "(was SALE_NEW)" in revived.stdout
    assert all(s["disabledAt"] is None for s in hook["subscriptions"])
    assert flow("connect", "--url", HOST).stdout.endswith("nothing changed\n")


def test_connect_reads_every_event_a_rule_listens_to_and_warns_of_unknown_ones(flow, sim, tmp_path):
    rules = RULES + (
        "  - { id: everything, on: systeme, actions: [ { cancel_subscription: 1 } ] }\n"
        "  - { id: typo, on: systeme/SALE_REFUNDED, actions: [ { cancel_subscription: 1 } ] }\n"
        "  - { id: off, enabled: false, on: systeme/CONTACT_OPT_IN, actions: [ { cancel_subscription: 1 } ] }\n"
    )
    write_rules(tmp_path, rules)
    done = flow("connect", "--url", HOST, "--json")
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout)
    assert outcome["events"] == [
        "CONTACT_CREATED", "CONTACT_OPT_IN", "CONTACT_TAG_ADDED", "CONTACT_TAG_REMOVED", "SALE_NEW", "SALE_CANCELED",
    ]  # fmt: skip
    assert "warning: rule 'typo': SALE_REFUNDED is not an event Systeme.io webhooks send" in done.stderr

    write_rules(tmp_path, RULES.replace("on: systeme/SALE_NEW", "on: systeme/SALE_*"))
    narrowed = json.loads(flow("connect", "--url", HOST, "--json").stdout)
    assert (narrowed[0]["action"], narrowed[0]["events"]) == ("updated", ["SALE_NEW", "SALE_CANCELED"])


def add_hook(sim, name: str, url: str) -> httpx.Response:
    """A webhook registered by something else (by hand, another tool), through the simulator's API."""
    body = {"name": name, "url": url, "secret": "theirs", "subscriptions": [{"event": "SALE_NEW", "schemaVersion": 2}]}
    return httpx.post(f"{sim.url}/api/webhooks", json=body, headers={"X-API-Key": SIM_KEY})


def test_the_simulator_refuses_a_second_webhook_of_one_name_or_url(sim):
    assert add_hook(sim, "Zapier", "https://hooks.zapier.com/1").status_code == 201
    for name, url, path in (
        ("Zapier", "https://hooks.zapier.com/2", "name"),
        ("Make", "https://hooks.zapier.com/1", "url"),
    ):
        answer = add_hook(sim, name, url)
        assert answer.status_code == 422
        assert answer.json()["violations"][0] == {
            "propertyPath": path, "message": "This value is already used.", "code": "invalid",
        }  # fmt: skip
    second = add_hook(sim, "Make", "https://hook.make.com/1").json()
    renamed = httpx.patch(
        f"{sim.url}/api/webhooks/{second['id']}", content=json.dumps({"name": "Zapier"}),
        headers={"X-API-Key": SIM_KEY, "Content-Type": "application/merge-patch+json"},
    )  # fmt: skip
    assert renamed.status_code == 422 and len(sim.account.webhooks) == 2


def test_connect_after_moving_hosts_replaces_ours_and_leaves_one(flow, sim):
    tunnel = "https://quiet-river-42.trycloudflare.com"
    assert flow("connect", "--url", tunnel).returncode == 0
    (old,) = [dict(h) for h in sim.account.webhooks.values()]
    stranger = add_hook(sim, "Zapier", "https://hooks.zapier.com/1").json()
    done = flow("connect", "--url", HOST)
    assert done.returncode == 0, done.stderr
    ours = [h for h in sim.account.webhooks.values() if h["id"] != stranger["id"]]
    (new,) = ours
    assert (new["url"], new["name"], new["secret"]) == (f"{HOST}/hooks/systeme", old["name"], SYSTEME_SECRET)
    assert done.stdout.splitlines() == [
        f"created webhook {new['id']} in account 'default': SALE_NEW -> {HOST}/hooks/systeme, replacing ours elsewhere",
        f"deleted webhook {old['id']} {tunnel}/hooks/systeme in account 'default' (one of ours per source)",
        "1 webhook changed",
    ]
    # The old one gave up its name before the new one took it, and went once the new one existed.
    assert writes(sim)[-3:] == [
        ("PATCH", f"/api/webhooks/{old['id']}"), ("POST", "/api/webhooks"), ("DELETE", f"/api/webhooks/{old['id']}"),
    ]  # fmt: skip
    assert stranger["id"] in sim.account.webhooks  # not ours: never touched
    assert flow("connect", "--url", HOST).stdout.endswith("nothing changed\n")


def test_connect_leaves_a_webhook_at_its_url_that_is_not_ours_unless_forced(flow, sim):
    stranger = add_hook(sim, "Hand-made", f"{HOST}/hooks/systeme").json()
    refused = flow("connect", "--url", HOST)
    assert refused.returncode == 1
    assert f"refused: webhook {stranger['id']} in account 'default' sends to {HOST}/hooks/systeme" in refused.stdout
    assert "'Hand-made'" in refused.stdout and "--force" in refused.stdout
    assert sim.account.webhooks[stranger["id"]]["secret"] == "theirs"
    forced = flow("connect", "--url", HOST, "--force")
    assert forced.returncode == 0, forced.stderr
    (hook,) = sim.account.webhooks.values()
    assert hook["id"] == stranger["id"] and hook["secret"] == SYSTEME_SECRET
    assert hook["name"].startswith("systeme-flow systeme [")


def test_webhooks_delete_asks_first_unless_yes(flow, sim):
    flow("connect", "--url", HOST)
    add_hook(sim, "Another", "https://other.example.com/hooks/systeme")
    first, second = list(sim.account.webhooks)
    declined = flow("webhooks", "delete", first, stdin="no\n")
    assert (declined.returncode, declined.stdout) == (1, "not deleted\n")
    assert f"Delete webhook {first} ({HOST}/hooks/systeme: SALE_NEW) in account 'default'? [y/N]" in declined.stderr
    assert first in sim.account.webhooks
    agreed = flow("webhooks", "delete", first, stdin="y\n")
    assert (agreed.returncode, agreed.stdout) == (0, f"deleted webhook {first} in account 'default'\n")
    forced = flow("webhooks", "delete", second, "--yes")
    assert forced.returncode == 0 and forced.stderr == ""
    assert sim.account.webhooks == {}
    assert flow("webhooks", "list").stdout.startswith("no webhooks in account 'default'")
    missing = flow("webhooks", "delete", second, "--yes")
    assert missing.returncode == 2 and f"no webhook {second} in account 'default'" in missing.stderr


def test_connect_and_webhooks_go_to_the_account_named(flow, sim, tmp_path):
    school = Simulator(api_key="school-key")
    with ServerThread(school.app) as server:
        rules = RULES.replace(
            "version: 1\n", f'version: 1\naccounts:\n  school: {{ api_key: school-key, api_url: "{server.url}" }}\n'
        )
        rules = rules.replace(
            f'systeme: {{ type: systeme, secret: "{SYSTEME_SECRET}" }}',
            f'systeme: {{ type: systeme, secret: "{SYSTEME_SECRET}", account: school }}',
        )
        write_rules(tmp_path, rules)
        nothing = flow("connect", "--url", HOST)  # the default account sends no systeme events here
        assert nothing.returncode == 2 and "no `systeme` source sends events of account 'default'" in nothing.stderr
        done = flow("connect", "--url", HOST, "--account", "school")
        assert done.returncode == 0, done.stderr
        assert len(school.account.webhooks) == 1 and sim.account.webhooks == {}
        listed = flow("webhooks", "list", "--account", "school", "--json")
        assert [h["url"] for h in json.loads(listed.stdout)] == [f"{HOST}/hooks/systeme"]
        assert "secret" not in listed.stdout  # Systeme.io never shows it again
        unknown = flow("webhooks", "list", "--account", "shop")
        assert unknown.returncode == 2 and "no account 'shop' (accounts: default, school)" in unknown.stderr

        school.api_key = "revoked"
        refused = flow("connect", "--url", HOST, "--account", "school")
        assert refused.returncode == 2
        assert refused.stderr == (
            "systeme-flow connect: account 'school': GET /api/webhooks answered 401: Invalid API key\n"
        )


def test_connect_refuses_a_bad_url_and_a_dry_run(flow, tmp_path):
    for url in ("flow.example.com", "ftp://flow.example.com", "https://flow.example.com/?x=1"):
        done = flow("connect", "--url", url)
        assert done.returncode == 2 and "--url must be this service's address" in done.stderr
    dry = run_cli("connect", "--url", HOST, cwd=tmp_path)
    assert dry.returncode == 2 and "account 'default' has no API key" in dry.stderr
