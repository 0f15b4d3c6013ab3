"""An operator marks an unserved payment handled, with a reason: stored, listed as `handled`, no longer alerted
about nor counted as unserved; a served or refunded payment cannot be."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import sqlalchemy as sa

from app.payments.alerts import alert_unserved
from app.rules.engine import RuleSet
from app.rules.loader import load_rules
from app.store.db import create_engine
from app.store.models import payments_handled, utcnow
from tests.clitools import run_cli
from tests.conftest import SIM_KEY, operator, planned, running, wait_for
from tests.factories import SHOP_RULES, checkout_for, stripe_headers, stripe_refund, write_rules
from tests.servers import alert_receiver


async def _post(url: str, event: dict) -> str:
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text
    event_id = str(answer.json()["event_id"])
    await planned(url, event_id)
    return event_id


async def test_an_unserved_payment_marked_handled_stops_counting(make_settings, database_url, tmp_path):
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=database_url, alert_webhook_url=alert_url, metrics_token=None)
        rules = write_rules(tmp_path, SHOP_RULES)  # after the settings, which write the default rules there
        sources = RuleSet(load_rules(rules, {})).sources
        engine = create_engine(database_url)
        try:
            # The service's own upkeep must not name the buyers before this test does: it runs without the receiver.
            with running(settings.model_copy(update={"alert_webhook_url": None})) as url:
                served = await _post(url, checkout_for("ada@yopmail.com", "masterclass"))
                unmapped = await _post(url, checkout_for("bob@yopmail.com", "ebook"))
                other = await _post(url, checkout_for("cy@yopmail.com", "poster"))

                async def is_served() -> bool:
                    async with operator(url) as http:
                        items = (await http.get("/v1/payments", params={"status": "served"})).json()["items"]
                    return [p["event_id"] for p in items] == [served]

                await wait_for(is_served)
                async with operator(url) as http:
                    empty = await http.post(f"/v1/payments/{unmapped}/handled", json={"reason": "  "})
                    missing = await http.post(f"/v1/payments/{unmapped}/handled", json={})
                    unknown = await http.post("/v1/payments/evt_nope/handled", json={"reason": "x"})
                    done = await http.post(f"/v1/payments/{served}/handled", json={"reason": "x"})
                    marked = await http.post(
                        f"/v1/payments/{unmapped}/handled", json={"reason": "enrolled by hand in Systeme.io"}
                    )
                    again = await http.post(f"/v1/payments/{unmapped}/handled", json={"reason": "twice"})
                    unserved = (await http.get("/v1/payments", params={"status": "unserved"})).json()["items"]
                    handled = (await http.get("/v1/payments", params={"status": "handled"})).json()["items"]
                    scraped = (await http.get("/metrics")).text
                async with httpx.AsyncClient(base_url=url) as http:
                    stranger = await http.post(f"/v1/payments/{other}/handled", json={"reason": "x"})
            named = await alert_unserved(engine, settings, sources, now=utcnow())
            later = await alert_unserved(engine, settings, sources, now=utcnow() + timedelta(hours=2))
        finally:
            await engine.dispose()
    assert (empty.status_code, missing.status_code, unknown.status_code) == (422, 422, 404)
    assert "reason" in empty.json()["error"]
    assert done.status_code == 409 and "is served" in done.json()["error"]
    assert marked.status_code == 200, marked.text
    item = marked.json()
    assert item["status"] == "handled" and item["reason"] == "no rule matched this payment"
    assert item["handled"]["reason"] == "enrolled by hand in Systeme.io" and item["handled"]["by"]
    assert again.status_code == 409
    assert stranger.status_code == 401
    assert [p["event_id"] for p in unserved] == [other]
    assert [p["event_id"] for p in handled] == [unmapped]
    assert "systeme_flow_payments_unserved 1.0" in scraped
    # Only the buyer still unserved is named; the handled one never is.
    assert (named, later) == (1, 0)
    assert len(received) == 1 and "cy@yopmail.com" in received[0] and "bob@" not in received[0]

    env = {"DATABASE_URL": database_url, "RULES_FILE": str(rules), "SYSTEME_API_KEY": SIM_KEY}
    cli = run_cli("payments", "handle", other, "--reason", "refunded at Stripe", "--by", "dana", cwd=tmp_path, **env)
    assert cli.returncode == 0, cli.stderr
    assert "handled" in cli.stdout and "(handled by dana at" in cli.stdout and "refunded at Stripe" in cli.stdout
    twice = run_cli("payments", "handle", other, "--reason", "again", cwd=tmp_path, **env)
    assert twice.returncode != 0 and "only an unserved or pending payment" in twice.stderr
    listed = run_cli("payments", "--status", "handled", "--json", cwd=tmp_path, **env)
    assert sorted(p["event_id"] for p in json.loads(listed.stdout)["items"]) == sorted([unmapped, other])

    # The reason is an operator's free text and may name the buyer: forgetting the buyer forgets it too.
    gone = run_cli("forget", "cy@yopmail.com", cwd=tmp_path, **env)
    assert gone.returncode == 0, gone.stderr
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(sa.select(payments_handled.c.event_id, payments_handled.c.reason))
            marks = {row.event_id: row.reason for row in found}
    finally:
        await engine.dispose()
    assert marks == {unmapped: "enrolled by hand in Systeme.io", other: "(forgotten)"}


async def test_a_refund_delivered_before_its_purchase_cannot_be_marked_handled(make_settings, database_url, tmp_path):
    settings = make_settings(database_url=database_url)
    write_rules(tmp_path, SHOP_RULES)  # after the settings, which write the default rules there
    with running(settings) as url:
        # The refund arrives first; the purchase (an unmapped product, so unserved were it not refunded) happened
        # two minutes before it: by event time it is refunded.
        await _post(url, stripe_refund("dee@yopmail.com"))
        purchase = checkout_for("dee@yopmail.com", "ebook")
        purchase["created"] = int(time.time()) - 120
        bought = await _post(url, purchase)
        async with operator(url) as http:
            listed = (await http.get("/v1/payments")).json()["items"]
            marked = await http.post(f"/v1/payments/{bought}/handled", json={"reason": "given by hand"})
            contact = (await http.get("/ui/contacts/dee%40yopmail.com")).text
    assert [(p["event_id"], p["status"]) for p in listed] == [(bought, "refunded")]
    assert marked.status_code == 409 and "is refunded" in marked.json()["error"]
    assert '<span class="badge refunded">refunded</span>' in contact
