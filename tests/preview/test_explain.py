"""Explain and check --live: what rules would do, with no writes (the simulator's call log proves it)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import SIM_KEY, operator, running
from tests.factories import RULES, stripe_checkout, stripe_headers, stripe_refund, write_rules


def explain(tmp_path, payload: dict, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    rules = write_rules(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "app", "explain", "--source", "stripe", str(event), "--rules", str(rules), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=tmp_path,
    )


def test_explain_says_why_each_rule_did_or_did_not_fire(tmp_path, sim):
    done = explain(tmp_path, stripe_checkout("ada@yopmail.com", paid=False), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    by_rule = {r["rule"]: r for r in report["rules"]}
    assert set(by_rule) == {
        "masterclass-purchase",
        "refund-revokes-access",
        "subscription-ended",
        "partner-signup",
        "newsletter",
        "vip-sale",
    }
    purchase = by_rule["masterclass-purchase"]
    assert not purchase["matched"]
    assert purchase["reason"] == '`if` was false: event.data.object.payment_status was "unpaid"'
    assert (
        by_rule["refund-revokes-access"]["reason"]
        == "`on` is stripe/charge.refunded; this event is stripe/checkout.session.completed"
    )
    assert report["signature"] == "not checked"
    assert sim.account.calls == []


def test_explain_lists_contact_and_ordered_calls(tmp_path, sim):
    done = explain(tmp_path, stripe_checkout("ada@yopmail.com"), "--json")
    purchase = next(r for r in json.loads(done.stdout)["rules"] if r["rule"] == "masterclass-purchase")
    assert purchase["matched"] and purchase["contact"]["email"] == "ada@yopmail.com"
    assert [a["kind"] for a in purchase["actions"]] == ["tag", "enroll", "add_to_community"]
    calls = [(c["method"], c["path"]) for c in purchase["actions"][1]["calls"]]
    assert calls[0] == ("GET", "/api/contacts?email=ada@yopmail.com")
    assert calls[-1] == ("POST", "/api/school/courses/101/enrollments")
    text = explain(tmp_path, stripe_checkout("ada@yopmail.com")).stdout
    assert "MATCH masterclass-purchase: matched" in text
    assert "no    vip-sale:" in text
    assert sim.account.calls == []


def test_explain_verify_checks_the_signature(tmp_path):
    payload = stripe_checkout()
    body = json.dumps(payload)
    headers = stripe_headers(body.encode())
    signed = [f"--header=Stripe-Signature:{headers['Stripe-Signature']}"]
    assert explain(tmp_path, payload, "--verify", *signed).returncode == 0
    forged = explain(tmp_path, payload, "--verify", "--header=Stripe-Signature:t=1,v1=00")
    assert forged.returncode != 0 and "signature" in forged.stderr.lower()


def test_explain_live_marks_changes_and_noops_with_reads_only(tmp_path, sim):
    contact = sim.account.create_contact(
        {"email": "ada@yopmail.com", "fields": [{"slug": "first_name", "value": "Ada"}]}
    )
    tag = sim.account.create_tag({"name": "Masterclass buyer"})
    sim.account.add_contact_tag(contact["id"], {"tagId": tag["id"]})
    env = {"SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    done = explain(tmp_path, stripe_checkout("ada@yopmail.com"), "--live", "--json", env=env)
    assert done.returncode == 0, done.stderr
    purchase = next(r for r in json.loads(done.stdout)["rules"] if r["rule"] == "masterclass-purchase")
    tag_action, enroll, community = purchase["actions"]
    assert (tag_action["change"], tag_action["note"], tag_action["calls"]) == (False, "already tagged", [])
    assert enroll["change"] and [c["path"] for c in enroll["calls"]] == ["/api/school/courses/101/enrollments"]
    assert community["change"]
    assert {c["method"] for c in sim.account.calls} == {"GET"}
    assert sim.account.enrollments == {}


def test_explain_of_a_refund_lists_no_contact_create_and_live_sends_nothing(tmp_path, sim):
    offline = json.loads(explain(tmp_path, stripe_refund("gone@yopmail.com"), "--json").stdout)
    refund = next(r for r in offline["rules"] if r["rule"] == "refund-revokes-access")
    assert [a["kind"] for a in refund["actions"]] == ["untag", "unenroll", "remove_from_community"]
    for action in refund["actions"]:
        assert ("POST", "/api/contacts") not in [(c["method"], c["path"]) for c in action["calls"]]
    env = {"SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    done = explain(tmp_path, stripe_refund("gone@yopmail.com"), "--live", "--json", env=env)
    assert done.returncode == 0, done.stderr
    refund = next(r for r in json.loads(done.stdout)["rules"] if r["rule"] == "refund-revokes-access")
    assert {(a["change"], a["note"]) for a in refund["actions"]} == {
        (False, "no contact in Systeme.io: nothing to remove")
    }
    assert [c for a in refund["actions"] for c in a["calls"]] == []
    assert {c["method"] for c in sim.account.calls} == {"GET"}


def test_check_live_reports_missing_courses_and_tag_notices(tmp_path, sim):
    rules = tmp_path / "live.yaml"
    rules.write_text(RULES.replace("course: 101, access", "course: 999, access"))
    env = {"PATH": "/usr/bin:/bin", "SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    done = subprocess.run(
        [sys.executable, "-m", "app", "check", "--live", str(rules)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"{rules}:10:5: rule 'masterclass-purchase': course 999 does not exist in the connected account" in lines
    assert (
        f"{rules}:10:5: rule 'masterclass-purchase': notice: tag 'Masterclass buyer' does not exist yet; it is created on first use"
        in lines
    )
    assert {c["method"] for c in sim.account.calls} == {"GET"}


def test_check_no_env_turns_unset_variables_into_warnings(tmp_path):
    rules = tmp_path / "env.yaml"
    rules.write_text('version: 1\nsources:\n  s: { type: stripe, secret: "${UNSET_SECRET_FOR_TEST}" }\n')
    done = subprocess.run(
        [sys.executable, "-m", "app", "check", "--no-env", str(rules)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        f"{rules}:3:30: source 's': warning: environment variable UNSET_SECRET_FOR_TEST is not set",
        "0 rules, 1 source: OK",
    ]


async def test_rules_test_endpoint_answers_the_explain_report(make_settings, sqlite_url, sim):
    with running(make_settings(database_url=sqlite_url)) as url:
        started = len(sim.account.calls)  # the service checks its key once at start
        async with operator(url) as http:
            answer = await http.post(
                "/v1/rules/test", json={"source": "stripe", "payload": stripe_checkout("t@yopmail.com")}
            )
        async with httpx.AsyncClient(base_url=url) as anonymous:
            unauthorised = await anonymous.post("/v1/rules/test", json={})
    assert answer.status_code == 200
    matched = [r["rule"] for r in answer.json()["rules"] if r["matched"]]
    assert matched == ["masterclass-purchase"]
    assert unauthorised.status_code == 401
    assert sim.account.calls[started:] == []


@pytest.mark.parametrize("path", ["/v1/rules", "/v1/events"])
async def test_operator_api_is_closed_without_admin_token(make_settings, sqlite_url, path):
    with running(make_settings(database_url=sqlite_url, admin_token=None)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.get(path)
    assert answer.status_code == 403
    assert "ADMIN_TOKEN" in answer.json()["error"]
