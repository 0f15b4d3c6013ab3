"""Every source type over HTTP: valid, forged, replayed and (where timestamped) stale deliveries."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.conftest import operator, running
from tests.factories import FORM_TOKEN, RULES, write_rules
from tests.flows import count_rows
from tests.provider_payloads import Signed, all_sources, rules_with_every_source

NAMES = [s.source for s in all_sources()]


def signed_now(name: str) -> Signed:
    """A delivery signed now: one signed at import would be stale (past `tolerance`) in a long test run."""
    return next(s for s in all_sources() if s.source == name)


def fresh(name: str) -> Signed:
    """Signed now: deliveries built at collection time go stale (Calendly's 180 s here) before a long run ends."""
    return {s.source: s for s in all_sources()}[name]


@pytest.fixture
def service(make_settings, sqlite_url, tmp_path):
    settings = make_settings(database_url=sqlite_url, systeme_api_key=None)
    write_rules(tmp_path, rules_with_every_source(RULES))
    with running(settings) as url:
        yield url


async def post(
    url: str,
    signed: Signed,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post(
            f"/hooks/{signed.source}",
            content=body if body is not None else signed.body,
            headers=headers or signed.headers,
            params=query if query is not None else signed.query,
        )


@pytest.mark.parametrize("name", NAMES)
async def test_valid_then_replayed_delivery(service, sqlite_url, name):
    signed = signed_now(name)
    first = await post(service, signed)
    assert first.status_code == 202, first.text
    again = await post(service, signed)
    assert again.status_code == 200, again.text
    assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    async with operator(service) as http:
        event = (await http.get(f"/v1/events/{first.json()['event_id']}")).json()
    assert event["type"] == signed.type
    assert not {
        "stripe-signature",
        "paddle-signature",
        "x-signature",
        "typeform-signature",
        "tally-signature",
        "x-hub-signature-256",
        "x-webhook-token",
        "x-shopify-hmac-sha256",
        "x-wc-webhook-signature",
        "calendly-webhook-signature",
    } & set(event["headers"])
    assert "thrivecart_secret" not in event["payload"]
    assert (await count_rows(sqlite_url))[0] == 1


@pytest.mark.parametrize("name", NAMES)
async def test_forged_delivery_is_refused_and_counted(service, sqlite_url, name):
    signed = signed_now(name)
    before = await failures(service, name)
    answer = await post(
        service,
        signed,
        headers=signed.forged_headers or signed.headers,
        query=signed.forged_query,
        body=signed.forged_body,
    )
    assert answer.status_code == 401, answer.text
    assert await count_rows(sqlite_url) == (0, 0)
    assert await failures(service, name) == before + 1


@pytest.mark.parametrize("name", [s.source for s in all_sources() if s.stale])
async def test_stale_delivery_is_refused(service, sqlite_url, name):
    signed = signed_now(name)
    answer = await post(service, signed, headers=signed.stale)
    assert answer.status_code == 401
    assert "stale" in answer.json()["error"]
    assert await count_rows(sqlite_url) == (0, 0)


async def failures(url: str, source: str) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    found = re.findall(rf'systeme_flow_signature_failures_total{{reason="[a-z]+",source="{source}"}} ([0-9.]+)', text)
    return sum(float(v) for v in found)


async def test_gumroad_seller_must_match(service, sqlite_url):
    signed = signed_now("gumroad")
    body = signed.body.replace(b"seller_id=seller-abc%3D%3D", b"seller_id=someone-else")
    async with httpx.AsyncClient(base_url=service) as http:
        answer = await http.post("/hooks/gumroad", content=body, headers=signed.headers, params=signed.query)
    assert answer.status_code == 401 and "seller_id" in answer.json()["error"]
    assert await count_rows(sqlite_url) == (0, 0)


async def test_gumroad_refund_is_a_new_event_for_the_same_sale(service, sqlite_url):
    signed = signed_now("gumroad")
    assert (await post(service, signed)).status_code == 202
    refund = Signed("gumroad", signed.body + b"&resource_name=refund", signed.headers, signed.query)
    answer = await post(service, refund)
    assert answer.status_code == 202
    async with operator(service) as http:
        assert (await http.get(f"/v1/events/{answer.json()['event_id']}")).json()["type"] == "refund"


async def test_honeypot_answers_like_success_and_stores_nothing(service, sqlite_url):
    async with httpx.AsyncClient(base_url=service) as http:
        bot = await http.post(
            "/hooks/jotform", params={"token": FORM_TOKEN}, data={"email": "bot@yopmail.com", "website": "http://spam"}
        )
        human = await http.post(
            "/hooks/jotform", params={"token": FORM_TOKEN}, data={"email": "h@yopmail.com", "website": ""}
        )
    assert bot.status_code == human.status_code == 202
    assert set(bot.json()) == set(human.json()) and bot.json()["duplicate"] is False
    assert (await count_rows(sqlite_url))[0] == 1


async def test_json_source_needs_its_signature_prefix(service, sqlite_url):
    signed = signed_now("hmacjson")
    answer = await post(service, signed, headers=signed.forged_headers)
    assert answer.status_code == 401 and "prefix" in answer.json()["error"]


async def test_rotated_secrets_both_verify(make_settings, sqlite_url, tmp_path):
    from tests.factories import stripe_checkout, stripe_headers

    settings = make_settings(database_url=sqlite_url, systeme_api_key=None)
    write_rules(
        tmp_path,
        RULES.replace(
            'stripe:  { type: stripe, secret: "whsec_test_stripe_secret" }',
            'stripe:  { type: stripe, secret: ["whsec_new", "whsec_test_stripe_secret"] }',
        ),
    )
    with running(settings) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            for secret in ("whsec_new", "whsec_test_stripe_secret"):
                body = json.dumps(stripe_checkout()).encode()
                answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body, secret=secret))
                assert answer.status_code == 202
