"""Backtest: stored events replayed through a changed rules file, with the difference and no outgoing calls."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.conftest import operator, post_stripe, running
from tests.factories import RULES, stripe_checkout, stripe_headers, stripe_refund


async def test_backtest_reports_what_a_new_rules_file_would_change(make_settings, database_url, tmp_path, sim):
    with running(make_settings(database_url=database_url, systeme_api_key=None)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            for event in (
                stripe_checkout("a@yopmail.com"),
                stripe_checkout("b@yopmail.com", paid=False),
                stripe_refund(),
            ):
                body = json.dumps(event).encode()
                assert (await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))).status_code == 202
    new_rules = tmp_path / "new.yaml"
    # The new file: unpaid checkouts also match, and buyers get a different tag.
    new_rules.write_text(
        RULES.replace('if: event.data.object.payment_status == "paid"', "if: true").replace(
            "tag: Masterclass buyer", "tag: Buyer"
        )
    )
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "app", "backtest", "--since", "1h", "--rules", str(new_rules), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["events"] == 3 and report["events_changed"] == 3
    assert report["totals"] == {"rules_gained": 1, "rules_lost": 0, "actions_added": 5, "actions_removed": 2}
    unpaid = next(c for c in report["changes"] if c["rules_gained"])
    assert unpaid["rules_gained"] == ["masterclass-purchase"]
    refund = next(c for c in report["changes"] if c["type"] == "charge.refunded")
    assert refund["actions_added"] == ['refund-revokes-access: untag {"name": "Buyer"}']
    assert refund["actions_removed"] == ['refund-revokes-access: untag {"name": "Masterclass buyer"}']
    text = subprocess.run(
        [sys.executable, "-m", "app", "backtest", "--since", "1h", "--rules", str(new_rules)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    ).stdout
    assert text.startswith("3 events since ") and "3 would change" in text
    assert sim.account.calls == []


async def test_backtest_counts_only_the_first_planning_of_a_replayed_event(make_settings, database_url, tmp_path):
    with running(make_settings(database_url=database_url, systeme_api_key=None)) as url:
        event_id = await post_stripe(url, stripe_checkout("r@yopmail.com"))
        async with operator(url) as http:
            for _ in range(2):
                assert (await http.post(f"/v1/events/{event_id}/replay")).status_code == 200
    done = subprocess.run(
        [sys.executable, "-m", "app", "backtest", "--since", "1h", "--json"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "RULES_FILE": str(tmp_path / "rules.yaml")},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Unchanged rules, an event planned once and replayed twice: nothing would differ.
    assert (report["events"], report["events_changed"]) == (1, 0)
    assert report["totals"] == {"rules_gained": 0, "rules_lost": 0, "actions_added": 0, "actions_removed": 0}
