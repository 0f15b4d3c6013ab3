"""The shop and booking sources over HTTP: set-up pings, HEAD probes, `on` with slashes, bracketed form keys."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import httpx
import pytest

from app.preview.service import explain, render_text
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules
from app.sources import Delivery
from tests.conftest import planned, running
from tests.factories import FORM_TOKEN, write_rules
from tests.flows import count_rows
from tests.shop_payloads import (
    CALENDLY_KEY,
    SHOPIFY_SECRET,
    THRIVECART_SECRET,
    WOO_SECRET,
    php_form,
    shopify_headers,
    shopify_order,
    thrivecart_order,
    woo_headers,
    woo_order,
)

RULES = f"""
version: 1
sources:
  shop:       {{ type: shopify, secret: "{SHOPIFY_SECRET}" }}
  woo:        {{ type: woocommerce, secret: "{WOO_SECRET}" }}
  thrivecart: {{ type: thrivecart, secret: "{THRIVECART_SECRET}" }}
  calendly:   {{ type: calendly, secret: "{CALENDLY_KEY}" }}
  signup:     {{ type: form, token: "{FORM_TOKEN}", rate_limit: unlimited }}
  gumroad:    {{ type: gumroad, token: "{FORM_TOKEN}", rate_limit: unlimited }}
rules:
  - id: shop-paid
    on: shop/orders/paid
    contact: {{ email: "{{{{ event.customer.email }}}}", first_name: "{{{{ event.customer.first_name }}}}" }}
    actions: [ {{ tag: Shopify buyer }} ]
  - id: shop-any-order
    on: shop/orders/*
    contact: {{ email: "{{{{ event.email }}}}" }}
    actions: [ {{ tag: Shopify order }} ]
  - id: thrivecart-sale
    on: thrivecart/order.success
    if: event.mode == "live" and event.order.charges[0].reference == "7"
    contact: {{ email: "{{{{ event.customer.email }}}}", first_name: "{{{{ event.customer.first_name }}}}" }}
    actions: [ {{ enroll: {{ course: 101 }} }} ]
  - id: nested-form
    on: signup
    contact: {{ email: "{{{{ event.lead.email }}}}", first_name: "{{{{ event['lead[name]'] }}}}" }}
    actions: [ {{ tag: "{{{{ event.interests[1] }}}}" }} ]
  - id: gumroad-affiliate
    on: gumroad/sale
    if: event.url_params.ref == "podcast"
    contact: {{ email: "{{{{ event.email }}}}" }}
    actions: [ {{ tag: From podcast }} ]
"""


@pytest.fixture
def service(make_settings, sqlite_url, tmp_path):
    settings = make_settings(database_url=sqlite_url, systeme_api_key=None)
    write_rules(tmp_path, RULES)
    with running(settings) as url:
        yield url


async def stored(url: str, event_id: str) -> dict:
    return await planned(url, event_id)


async def pings(url: str, source: str) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(rf'systeme_flow_events_received_total{{outcome="ping",source="{source}"}} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


async def test_woocommerce_creation_ping_gets_exactly_200_and_stores_nothing(service, sqlite_url):
    before = await pings(service, "woo")  # metrics live as long as the process
    async with httpx.AsyncClient(base_url=service) as http:
        # What `WC_Webhook::deliver_ping` sends: an unsigned form body, no WooCommerce headers.
        answer = await http.post(
            "/hooks/woo",
            content=b"webhook_id=142",
            headers={"User-Agent": "WooCommerce/9.4.1 Hookshot (WordPress/6.7)"},
        )
    assert (answer.status_code, answer.json()) == (200, {"ping": True})
    assert await count_rows(sqlite_url) == (0, 0)
    assert await pings(service, "woo") == before + 1


async def test_thrivecart_head_and_test_post_succeed_and_store_nothing(service, sqlite_url):
    before = await pings(service, "thrivecart")
    async with httpx.AsyncClient(base_url=service) as http:
        head = await http.head("/hooks/thrivecart")
        empty = await http.post("/hooks/thrivecart")
        probe = await http.post("/hooks/thrivecart", data={"thrivecart_account": "example"})
        forged = await http.post(
            "/hooks/thrivecart",
            content=php_form(thrivecart_order(secret=None)),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert (head.status_code, head.content) == (200, b"")
    assert empty.status_code == probe.status_code == 200 and probe.json() == {"ping": True}
    assert forged.status_code == 401 and "thrivecart_secret" in forged.json()["error"]
    assert await count_rows(sqlite_url) == (0, 0)
    assert await pings(service, "thrivecart") == before + 3


@pytest.mark.parametrize(("source", "status"), [("shop", 200), ("calendly", 200), ("signup", 200), ("nope", 404)])
async def test_head_answers_for_known_sources_only(service, source, status):
    async with httpx.AsyncClient(base_url=service) as http:
        assert (await http.head(f"/hooks/{source}")).status_code == status


async def test_shopify_topic_with_a_slash_matches_exact_and_wildcard_rules(service):
    body = json.dumps(shopify_order("buyer@yopmail.com")).encode()
    async with httpx.AsyncClient(base_url=service) as http:
        answer = await http.post("/hooks/shop", content=body, headers=shopify_headers(body))
        retry = await http.post("/hooks/shop", content=body, headers=shopify_headers(body, event_id="other"))
    event = await stored(service, answer.json()["event_id"])
    assert event["type"] == "orders/paid"
    assert {r["rule_id"]: r["decision"] for r in event["rules"]} == {
        "shop-paid": "matched",
        "shop-any-order": "matched",
    }
    assert sorted(a["params"]["name"] for a in event["actions"]) == ["Shopify buyer", "Shopify order"]
    # The event id is an unsigned header: the same signed body under another one is a duplicate.
    assert retry.status_code == 200 and retry.json() == {"event_id": answer.json()["event_id"], "duplicate": True}


async def test_thrivecart_rule_reads_the_nested_customer(service):
    fields = thrivecart_order("susan@yopmail.com")
    async with httpx.AsyncClient(base_url=service) as http:
        answer = await http.post(
            "/hooks/thrivecart", content=php_form(fields), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    assert answer.status_code == 202, answer.text
    event = await stored(service, answer.json()["event_id"])
    (rule,) = event["rules"]
    assert (rule["rule_id"], rule["decision"], rule["contact_email"]) == (
        "thrivecart-sale",
        "matched",
        "susan@yopmail.com",
    )
    assert [(a["kind"], a["params"]) for a in event["actions"]] == [
        ("enroll", {"course": 101, "access": "full_access"})
    ]
    assert event["payload"]["customer"]["first_name"] == "Susan"
    assert "thrivecart_secret" not in event["payload"] and THRIVECART_SECRET not in json.dumps(event)


@pytest.mark.parametrize("multipart", [False, True])
async def test_any_form_source_nests_bracketed_keys_and_keeps_flat_ones(service, multipart):
    fields = [("lead[email]", "Lea@Yopmail.com"), ("lead[name]", "Lea"), ("interests[]", "a"), ("interests[]", "b")]
    async with httpx.AsyncClient(base_url=service) as http:
        if multipart:
            answer = await http.post(
                "/hooks/signup", params={"token": FORM_TOKEN}, files=[(k, (None, v)) for k, v in fields]
            )
        else:
            answer = await http.post(
                "/hooks/signup",
                params={"token": FORM_TOKEN},
                content=urlencode(fields).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    event = await stored(service, answer.json()["event_id"])
    assert event["rules"][0]["contact_email"] == "lea@yopmail.com"
    assert [a["params"] for a in event["actions"]] == [{"name": "b"}]
    assert event["payload"]["lead"] == {"email": "Lea@Yopmail.com", "name": "Lea"}
    assert event["payload"]["interests[]"] == ["a", "b"] and event["payload"]["interests"] == ["a", "b"]


async def test_gumroad_url_params_are_readable_nested(service):
    body = urlencode(
        {
            "seller_id": "s",
            "email": "g@yopmail.com",
            "sale_id": "S1==",
            "url_params[ref]": "podcast",
            "card[visual]": "x",
        }
    ).encode()
    async with httpx.AsyncClient(base_url=service) as http:
        answer = await http.post(
            "/hooks/gumroad",
            params={"token": FORM_TOKEN},
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    event = await stored(service, answer.json()["event_id"])
    assert [(r["rule_id"], r["decision"]) for r in event["rules"]] == [("gumroad-affiliate", "matched")]


async def test_explain_reports_a_ping_and_judges_nothing():
    rules = RuleSet(parse_rules(RULES, path="r", env={}))
    report = await explain(rules, source="woo", delivery=Delivery(headers={}, body=b"webhook_id=142"))
    assert (report["ping"], report["rules"]) == (True, [])
    assert "set-up ping" in render_text(report)


@pytest.mark.parametrize("source", ["shop", "woo"])
async def test_a_captured_shop_body_resent_with_new_id_headers_is_a_duplicate(
    make_settings, database_url, tmp_path, source
):
    """Shopify and WooCommerce sign only the body: their id headers cannot make a captured body a new event."""
    settings = make_settings(database_url=database_url, systeme_api_key=None)
    write_rules(tmp_path, RULES)
    if source == "shop":
        body = json.dumps(shopify_order("buyer@yopmail.com")).encode()
        first, again = shopify_headers(body, event_id="e-1"), shopify_headers(body, event_id="e-2")
        other_topic = shopify_headers(body, event_id="e-2", topic="orders/updated")
    else:
        body = woo_order("buyer@yopmail.com")
        first, again = woo_headers(body), woo_headers(body)  # each with its own X-WC-Webhook-Delivery-ID
        other_topic = woo_headers(body, topic="order.updated")
    assert first != again
    with running(settings) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            stored_one = await http.post(f"/hooks/{source}", content=body, headers=first)
            resent = await http.post(f"/hooks/{source}", content=body, headers=again)
            topic = await http.post(f"/hooks/{source}", content=body, headers=other_topic)
    assert (stored_one.status_code, resent.status_code) == (202, 200), resent.text
    assert resent.json() == {"event_id": stored_one.json()["event_id"], "duplicate": True}
    # One order reaches several topics with the same body: another topic is another event.
    assert topic.status_code == 202 and topic.json()["event_id"] != stored_one.json()["event_id"]
