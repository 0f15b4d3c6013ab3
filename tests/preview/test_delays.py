"""Explain and backtest with delayed steps and `cancel_scheduled`: when each step would run, what it would cancel."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tests.conftest import SIM_KEY, operator, post_stripe, running
from tests.factories import DRIP, drip_settings, stripe_checkout, stripe_refund
from tests.flows import settled


def explain(tmp_path, payload: dict, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    event, rules = tmp_path / "event.json", tmp_path / "drip.yaml"
    event.write_text(json.dumps(payload))
    rules.write_text(DRIP)
    return subprocess.run(
        [sys.executable, "-m", "app", "explain", "--source", "stripe", str(event), "--rules", str(rules), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=tmp_path,
    )


def actions_of(report: dict, rule: str) -> list[dict]:
    return next(r for r in report["rules"] if r["rule"] == rule)["actions"]


def test_explain_says_when_each_step_would_run(tmp_path, sim):
    created = int(time.time()) // 60 * 60 - 3600  # on the minute, as the example in the issue shows it
    at = datetime.fromtimestamp(created, UTC) + timedelta(days=7)
    done = explain(tmp_path, stripe_checkout("ada@yopmail.com", created=created), "--json")
    assert done.returncode == 0, done.stderr
    steps = actions_of(json.loads(done.stdout), "masterclass-purchase")
    assert [(a["kind"], a["when"]) for a in steps] == [
        ("tag", "now"),
        ("enroll", "now"),
        ("add_to_community", f"at {at:%Y-%m-%dT%H:%M}Z, 7d after the event"),
        ("tag", f"at {at + timedelta(days=7):%Y-%m-%dT%H:%M}Z, 14d after the event"),
    ]
    assert (steps[2]["after"], steps[2]["due_at"]) == (7 * 86400, at.isoformat())
    text = explain(tmp_path, stripe_checkout("ada@yopmail.com", created=created)).stdout
    assert f'add_to_community {{"community": "Insiders"}} approval=auto  at {at:%Y-%m-%dT%H:%M}Z, 7d after' in text
    assert sim.account.calls == []


def test_explain_describes_cancel_scheduled_without_the_store_and_live(tmp_path, sim):
    env = {"SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    for live in ((), ("--live",)):
        done = explain(tmp_path, stripe_refund("ada@yopmail.com"), *live, "--json", env=env)
        assert done.returncode == 0, done.stderr
        cancel, *_ = actions_of(json.loads(done.stdout), "refund-revokes-access")
        assert (cancel["kind"], cancel["calls"]) == ("cancel_scheduled", [])
        assert cancel["note"] == (
            "would cancel this contact's pending and scheduled steps of rule masterclass-purchase"
            " (no Systeme.io request)"
        )
    assert {c["method"] for c in sim.account.calls} == {"GET"}  # the live reads of the other steps only


async def test_explain_counts_what_cancel_scheduled_would_cancel(make_settings, sqlite_url, sim, tmp_path):
    with running(drip_settings(make_settings, tmp_path, database_url=sqlite_url)) as url:
        purchase = await post_stripe(url, stripe_checkout("count@yopmail.com"))
        await settled(url, purchase)
        async with operator(url) as http:
            report = (
                await http.post(
                    "/v1/rules/test", json={"source": "stripe", "payload": stripe_refund("count@yopmail.com")}
                )
            ).json()
            other = (
                await http.post(
                    "/v1/rules/test", json={"source": "stripe", "payload": stripe_refund("none@yopmail.com")}
                )
            ).json()
    assert actions_of(report, "refund-revokes-access")[0]["note"] == (
        "would cancel 2 scheduled or pending steps of rule masterclass-purchase for this contact (no Systeme.io request)"
    )
    assert actions_of(other, "refund-revokes-access")[0]["note"].startswith("would cancel 0 scheduled or pending steps")


async def test_backtest_counts_delayed_steps_and_cancel_scheduled_like_the_others(
    make_settings, sqlite_url, sim, tmp_path
):
    with running(make_settings(database_url=sqlite_url)) as url:
        events = [await post_stripe(url, stripe_checkout("bt@yopmail.com")), await post_stripe(url, stripe_refund())]
        await settled(url, *events)
    (tmp_path / "drip.yaml").write_text(DRIP)
    done = subprocess.run(
        [sys.executable, "-m", "app", "backtest", "--since", "1h", "--rules", str(tmp_path / "drip.yaml"), "--json"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": sqlite_url},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["totals"] == {"rules_gained": 0, "rules_lost": 0, "actions_added": 2, "actions_removed": 0}
    added = sorted(a for change in report["changes"] for a in change["actions_added"])
    assert added == [
        'masterclass-purchase: tag {"name": "Week two"}',
        'refund-revokes-access: cancel_scheduled {"rule": "masterclass-purchase"}',
    ]
