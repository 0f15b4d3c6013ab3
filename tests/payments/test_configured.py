"""Payments of Standard Webhooks and `json` sources, told by the rules file's `payment:`."""

from __future__ import annotations

import json

import httpx
import pytest

from app.errors import RulesError
from app.payments.alerts import alert_unserved
from app.payments.configured import payment_in
from app.rules.engine import RuleSet
from app.rules.loader import load_rules, parse_rules
from app.store.db import create_engine
from app.store.models import utcnow
from tests.clitools import run_cli
from tests.conftest import SIM_KEY, operator, planned, running, wait_for
from tests.factories import FORM_TOKEN, PARTNER_SECRET, standard_headers, write_rules
from tests.servers import alert_receiver

# Polar (polar.sh) signs with Standard Webhooks and sends amounts in cents; a Teachable-style course shop posts
# plain JSON with a token and decimal prices.
RULES = f"""
version: 1
sources:
  polar:
    type: standard-webhooks
    secret: "{PARTNER_SECRET}"
    payment:
      when: event.type == "order.paid"
      refund: event.type == "order.refunded"
      email: event.data.customer.email
      amount: event.data.total_amount
      currency: event.data.currency
      product: event.data.product.name
      order: event.data.id
      minor_units: true
  school:
    type: json
    token: "{FORM_TOKEN}"
    type_field: type
    id_field: id
    payment:
      when: event.type == "Sale.created" and event.object.status == "paid"
      email: event.object.user.email
      amount: event.object.final_price
      currency: "event.object.currency | default('EUR')"
      product: event.object.product_name
rules:
  - id: masterclass
    on: polar/order.paid
    if: event.data.product.name == "Masterclass"
    contact: {{ email: "{{{{ event.data.customer.email }}}}" }}
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101 }}
"""


def polar_order(email: str, product: str, order: str, *, kind: str = "order.paid") -> dict:
    return {
        "type": kind,
        "timestamp": "2026-12-01T09:30:00.000000Z",
        "data": {
            "id": order,
            "created_at": "2026-12-01T09:29:58.000000Z",
            "status": "refunded" if kind == "order.refunded" else "paid",
            "paid": True,
            "subtotal_amount": 19900,
            "tax_amount": 0,
            "total_amount": 19900,
            "refunded_amount": 19900 if kind == "order.refunded" else 0,
            "currency": "eur",
            "billing_reason": "purchase",
            "customer": {"id": "c0a8e1b2", "email": email, "name": "Ada Lovelace"},
            "product": {"id": "9d1e4c7a", "name": product, "is_recurring": False},
            "metadata": {},
        },
    }


def school_sale(email: str, sale_id: int) -> dict:
    return {
        "id": sale_id,
        "type": "Sale.created",
        "created": "2026-12-01T09:31:00Z",
        "object": {
            "id": 88001,
            "status": "paid",
            "final_price": "49.50",
            "product_name": "Watercolour basics",
            "user": {"id": 5001, "email": email, "name": "Bob Ross"},
        },
    }


async def _polar(http: httpx.AsyncClient, event: dict) -> str:
    body = json.dumps(event).encode()
    answer = await http.post("/hooks/polar", content=body, headers=standard_headers(body))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["event_id"])


async def test_configured_sources_list_their_payments_and_refunds(make_settings, database_url, tmp_path):
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=database_url, alert_webhook_url=alert_url)
        rules = write_rules(tmp_path, RULES)
        # The service runs without the receiver: its own upkeep (late on a loaded machine) must not name the buyer
        # before the test's call does.
        with running(settings.model_copy(update={"alert_webhook_url": None})) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                served = await _polar(http, polar_order("ada@yopmail.com", "Masterclass", "ord_1"))
                refunded = await _polar(http, polar_order("cy@yopmail.com", "Masterclass", "ord_2"))
                sale = await http.post(
                    "/hooks/school", json=school_sale("bob@yopmail.com", 7), headers={"X-Webhook-Token": FORM_TOKEN}
                )
                assert sale.status_code == 202, sale.text
                unmapped = str(sale.json()["event_id"])

                async def settled(event_id: str) -> bool:
                    actions = (await planned(url, event_id))["actions"]
                    return bool(actions) and all(a["status"] == "succeeded" for a in actions)

                await wait_for(lambda: settled(served))
                await wait_for(lambda: settled(refunded))
                await planned(url, unmapped)
                refund = await _polar(
                    http, polar_order("cy@yopmail.com", "Masterclass", "ord_2", kind="order.refunded")
                )
                await planned(url, refund)
            async with operator(url) as api:
                listed = (await api.get("/v1/payments")).json()["items"]
                from_polar = (await api.get("/v1/payments", params={"source": "polar"})).json()["items"]
        engine = create_engine(database_url)
        try:
            sources = RuleSet(load_rules(rules, {})).sources
            named = await alert_unserved(engine, settings, sources, now=utcnow())
        finally:
            await engine.dispose()
    by_id = {p["event_id"]: p for p in listed}
    assert set(by_id) == {served, refunded, unmapped}  # the refund itself is not a payment
    ada = by_id[served]
    assert (ada["status"], ada["email"], ada["product"], ada["order"]) == (
        "served",
        "ada@yopmail.com",
        "Masterclass",
        "ord_1",
    )
    assert (ada["amount"], ada["amount_raw"], ada["unit"], ada["currency"]) == ("199.00", "19900", "minor", "EUR")
    assert ada["access_seconds"] is not None
    assert by_id[refunded]["status"] == "refunded"  # linked by its order id
    bob = by_id[unmapped]
    assert (bob["status"], bob["reason"]) == ("unserved", "no rule matched this payment")
    assert (bob["amount"], bob["unit"], bob["currency"], bob["product"]) == (
        "49.50",
        "major",
        "EUR",
        "Watercolour basics",
    )
    assert {p["event_id"] for p in from_polar} == {served, refunded}
    assert named == 1 and "bob@yopmail.com (Watercolour basics, 49.50 EUR): no rule matched" in received[0]
    env = {"DATABASE_URL": database_url, "RULES_FILE": str(rules), "SYSTEME_API_KEY": SIM_KEY}
    text = run_cli("payments", "--source", "school", cwd=tmp_path, **env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("\n") == 1 and "bob@yopmail.com  Watercolour basics  49.50 EUR" in text.stdout


def test_what_an_expression_cannot_read_is_unknown_not_an_error():
    sources = RuleSet(parse_rules(RULES, path="rules.yaml", env={})).sources
    event = polar_order("ada@yopmail.com", "Masterclass", "ord_1")
    del event["data"]["customer"]
    event["data"]["total_amount"] = {"gross": 19900}  # not a value: unknown
    paid = payment_in(sources["polar"], "order.paid", event)
    assert paid is not None and (paid.kind, paid.email, paid.amount, paid.product) == (
        "payment",
        None,
        None,
        "Masterclass",
    )
    assert payment_in(sources["polar"], "checkout.created", {"type": "checkout.created", "data": {}}) is None
    # `json` without `refund:`: only payments; `when` reading a missing value is false.
    assert payment_in(sources["school"], "Sale.created", {"type": "Sale.created"}) is None


def _load_problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, path="rules.yaml", env={})
    return caught.value.problems


def test_payment_expressions_are_checked_at_load_with_their_position():
    broken = RULES.replace('when: event.type == "order.paid"', 'when: event.type = "order.paid"').replace(
        "amount: event.object.final_price", "amount: event.object.final_price +"
    )
    problems = _load_problems(broken)
    assert len(problems) == 2, problems
    when, amount = problems
    assert when.startswith("rules.yaml:8:13: source 'polar': invalid `payment.when` expression: a single `=`")
    assert amount.startswith("rules.yaml:24:15: source 'school': invalid `payment.amount` expression")


def test_payment_is_only_for_sources_without_a_shape_of_their_own_and_needs_its_keys():
    stripe = RULES.replace("type: standard-webhooks", "type: stripe")
    assert any("`payment` only applies to json and standard-webhooks sources" in p for p in _load_problems(stripe))
    missing = RULES.replace("      email: event.object.user.email\n", "")
    problems = _load_problems(missing)
    assert any("source 'school'" in p and "payment.email" in p and "Field required" in p for p in problems), problems
    typo = RULES.replace("minor_units: true", "minor_unit: true")
    assert any("unknown key `minor_unit` (did you mean `minor_units`?)" in p for p in _load_problems(typo))
