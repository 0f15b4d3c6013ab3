"""Payments as the operator sees them: served, unserved (no rule, refused access, too late), refunded."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import timedelta

import httpx

from app.payments.recognize import Payment
from app.payments.service import judge, refunded_payments
from app.store.models import utcnow
from tests.clitools import run_cli
from tests.conftest import SIM_KEY, operator, planned, running, wait_for
from tests.factories import MASTERCLASS_ONLY_RULES as RULES
from tests.factories import stripe_checkout, stripe_headers, stripe_refund, write_rules


async def _post(url: str, event: dict) -> str:
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["event_id"])


def _checkout(email: str, product: str) -> dict:
    event = stripe_checkout(email)
    event["data"]["object"]["metadata"] = {"product": product}
    return event


async def test_served_unserved_and_refunded_payments_in_the_api_and_the_cli(make_settings, database_url, tmp_path):
    settings = make_settings(database_url=database_url)
    rules = write_rules(tmp_path, RULES)
    with running(settings) as url:
        served = await _post(url, _checkout("ada@yopmail.com", "masterclass"))
        unmapped = await _post(url, _checkout("bob@yopmail.com", "ebook"))
        refunded = await _post(url, _checkout("cy@yopmail.com", "masterclass"))

        async def settled(event_id: str) -> bool:
            actions = (await planned(url, event_id))["actions"]
            return bool(actions) and all(a["status"] == "succeeded" for a in actions)

        await wait_for(lambda: settled(served))
        await wait_for(lambda: settled(refunded))
        await planned(url, unmapped)
        await _post(url, stripe_refund("cy@yopmail.com"))
        async with operator(url) as http:
            listed = (await http.get("/v1/payments")).json()["items"]
            unserved = (await http.get("/v1/payments", params={"status": "unserved"})).json()["items"]
            bad = await http.get("/v1/payments", params={"status": "lost"})
        async with httpx.AsyncClient(base_url=url) as http:
            stranger = await http.get("/v1/payments")
    by_id = {p["event_id"]: p for p in listed}
    assert set(by_id) == {served, unmapped, refunded}  # the refund itself is not a payment
    assert by_id[served]["status"] == "served" and by_id[served]["access_seconds"] is not None
    assert (by_id[served]["amount"], by_id[served]["currency"], by_id[served]["product"]) == (
        "199.00",
        "EUR",
        "masterclass",
    )
    assert by_id[unmapped]["status"] == "unserved" and by_id[unmapped]["reason"] == "no rule matched this payment"
    assert by_id[refunded]["status"] == "refunded"
    assert [p["event_id"] for p in unserved] == [unmapped]
    assert bad.status_code == 400 and "served" in bad.json()["error"]
    assert stranger.status_code == 401

    env = {"DATABASE_URL": database_url, "RULES_FILE": str(rules), "SYSTEME_API_KEY": SIM_KEY}
    text = run_cli("payments", "--status", "unserved", cwd=tmp_path, **env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("\n") == 1 and "bob@yopmail.com  ebook  199.00 EUR" in text.stdout
    assert "no rule matched" in text.stdout
    sheet = run_cli("payments", "--csv", cwd=tmp_path, **env)
    rows = list(csv.DictReader(io.StringIO(sheet.stdout)))
    assert sorted(r["status"] for r in rows) == ["refunded", "served", "unserved"]
    none = run_cli("payments", "--since", "1s", "--status", "pending", cwd=tmp_path, **env)
    assert none.stdout == "no payments with status pending in that period\n"


def _row(status: str, kind: str = "enroll", **extra: object) -> dict:
    now = utcnow()
    base = {"rule_id": "r", "seq": 0, "kind": kind, "status": status, "last_error": None, "note": None}
    return {**base, "created_at": now, "updated_at": now, **extra}


def test_a_payment_waiting_past_its_deadline_is_unserved_and_a_refused_step_at_once():
    received = utcnow() - timedelta(minutes=11)
    deadline = timedelta(minutes=10)
    waiting = [_row("awaiting_approval"), _row("succeeded", "tag", seq=1)]
    assert judge(received, True, True, waiting, now=received + timedelta(minutes=9), deadline=deadline)[0] == "pending"
    late = judge(received, True, True, waiting, now=utcnow(), deadline=deadline)
    assert late[0] == "unserved" and "within 10 minutes (awaiting_approval)" in (late[1] or "")
    refused = judge(
        received, True, True, [_row("failed", last_error="403: forbidden")], now=received, deadline=deadline
    )
    assert refused == ("unserved", "enroll failed: 403: forbidden", None)
    assert judge(received, False, False, [], now=utcnow(), deadline=deadline)[0] == "pending"
    dry = _row("skipped", outcome="dry run: nothing was sent")
    assert (
        judge(received, True, True, [dry], now=received, deadline=deadline)[1]
        == "enroll skipped: dry run: nothing was sent"
    )


def test_a_replayed_step_that_succeeded_serves_the_payment():
    received = utcnow()
    first = _row("failed", created_at=received, last_error="403")
    again = _row("succeeded", created_at=received + timedelta(seconds=5), updated_at=received + timedelta(seconds=6))
    status, reason, took = judge(received, True, True, [first, again], now=utcnow(), deadline=timedelta(minutes=10))
    assert (status, reason) == ("served", None) and took is not None and 5.9 < took < 6.1


def test_refunds_indexed_by_order_and_buyer_match_as_before():
    t0 = utcnow()
    refunds = [
        (t0, Payment("refund", "ada@yopmail.com", None, None, None, "minor", "pi_1")),
        (t0, Payment("refund", "bob@yopmail.com", None, None, "ebook", "minor", None)),
        (t0 - timedelta(hours=1), Payment("refund", "cy@yopmail.com", None, None, None, "minor", None)),
        (t0, Payment("refund", "dee@yopmail.com", None, None, None, "minor", None)),
    ]
    cases = [
        # By order when both have one: the same order refunds it, another does not (even for the same buyer).
        (Payment("payment", "ada@yopmail.com", "1", None, "x", "minor", "pi_1"), True),
        (Payment("payment", "ada@yopmail.com", "1", None, "x", "minor", "pi_2"), False),
        # A payment without an order matches a refund with one by buyer (the refund names no product).
        (Payment("payment", "ada@yopmail.com", "1", None, "x", "minor", None), True),
        # By buyer and product, a refund naming a product refunds only that product.
        (Payment("payment", "bob@yopmail.com", "1", None, "ebook", "minor", "pi_9"), True),
        (Payment("payment", "bob@yopmail.com", "1", None, "poster", "minor", None), False),
        # A refund before the payment (event time) does not refund it; nor one of another buyer, nor no buyer.
        (Payment("payment", "cy@yopmail.com", "1", None, "x", "minor", None), False),
        (Payment("payment", "eve@yopmail.com", "1", None, "x", "minor", None), False),
        (Payment("payment", None, "1", None, "x", "minor", None), False),
        (Payment("payment", "dee@yopmail.com", "1", None, None, "minor", "pi_3"), True),
    ]
    alone = [refunded_payments([(t0 - timedelta(minutes=1), paid)], refunds) == {0} for paid, _ in cases]
    assert alone == [want for _, want in cases]
    # At the refund's own time it still counts (a refund at the payment's second refunds it); after it, not.
    first = cases[0][0]
    at = [refunded_payments([(t0 + timedelta(seconds=s), first)], refunds) == {0} for s in (0, 1)]
    assert at == [True, False]


def test_one_refund_refunds_one_payment_the_latest_of_the_same_amount():
    t0 = utcnow()
    refund = Payment("refund", "ada@yopmail.com", "19900", None, None, "minor", None)
    ebook = Payment("payment", "ada@yopmail.com", "900", "EUR", "ebook", "minor", None)
    course = Payment("payment", "ada@yopmail.com", "19900", "EUR", "masterclass", "minor", None)
    bought = [(t0 - timedelta(minutes=3), course), (t0 - timedelta(minutes=2), course), (t0 - timedelta(1), ebook)]
    assert refunded_payments(bought, [(t0, refund)]) == {1}
    # Two refunds refund two payments; a third payment after both is refunded by neither.
    later = [*bought, (t0 + timedelta(minutes=1), course)]
    assert refunded_payments(later, [(t0, refund), (t0, refund)]) == {0, 1}
    # A refund received first (its event time after the payment's) still refunds it: the order of arrival is moot.
    assert refunded_payments([(t0, course)], [(t0 + timedelta(seconds=5), refund)]) == {0}


EBOOK_AND_MASTERCLASS_RULES = (
    RULES
    + """
  - id: ebook-purchase
    on: stripe/checkout.session.completed
    if: event.data.object.metadata.product == "ebook"
    contact: { email: "{{ event.data.object.customer_details.email }}" }
    actions:
      - tag: Ebook buyer
"""
)


async def test_one_stripe_refund_refunds_only_the_latest_payment_of_its_amount(make_settings, database_url, tmp_path):
    # charge.refunded names no product nor order: it used to refund every earlier payment of the buyer.
    settings = make_settings(database_url=database_url)
    rules = write_rules(tmp_path, EBOOK_AND_MASTERCLASS_RULES)
    now = int(time.time())
    ebook = stripe_checkout("ada@yopmail.com", created=now - 30)
    ebook["data"]["object"].update(metadata={"product": "ebook"}, amount_total=900)
    refund = stripe_refund("ada@yopmail.com")
    refund["created"] = now
    with running(settings) as url:
        ids = [await _post(url, ebook)]
        for ago in (20, 10):
            ids.append(await _post(url, stripe_checkout("ada@yopmail.com", created=now - ago)))
        for event_id in ids:
            await wait_for(lambda one=event_id: _settled(url, one))
        await _post(url, refund)
    env = {"DATABASE_URL": database_url, "RULES_FILE": str(rules), "SYSTEME_API_KEY": SIM_KEY}
    sheet = run_cli("payments", "--csv", cwd=tmp_path, **env)
    assert sheet.returncode == 0, sheet.stderr
    status = {r["event_id"]: r["status"] for r in csv.DictReader(io.StringIO(sheet.stdout))}
    assert status == {ids[0]: "served", ids[1]: "served", ids[2]: "refunded"}


async def _settled(url: str, event_id: str) -> bool:
    actions = (await planned(url, event_id))["actions"]
    return bool(actions) and all(a["status"] == "succeeded" for a in actions)
