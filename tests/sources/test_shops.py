"""Shopify, WooCommerce, ThriveCart and Calendly: each verified as its provider documents it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from app.errors import Unauthorized, UnsupportedMediaType
from app.rules.schema import SourceConfig
from app.sources import Delivery, parse_delivery
from app.sources.base import body_hash
from app.webhooks.body import build_delivery
from tests.shop_payloads import (
    CALENDLY_KEY,
    SHOPIFY_SECRET,
    THRIVECART_SECRET,
    WOO_SECRET,
    calendly_body,
    calendly_headers,
    php_form,
    shopify_headers,
    shopify_order,
    thrivecart_order,
    woo_headers,
    woo_order,
)

NOW = time.time()
SHOPIFY = SourceConfig(type="shopify", secret=(SHOPIFY_SECRET,))
WOO = SourceConfig(type="woocommerce", secret=(WOO_SECRET,))
THRIVECART = SourceConfig(type="thrivecart", secret=("rotated-out", THRIVECART_SECRET))
CALENDLY = SourceConfig(type="calendly", secret=(CALENDLY_KEY,), tolerance=180)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def delivery(headers: dict[str, str], body: bytes) -> Delivery:
    return Delivery(headers={k.lower(): v for k, v in headers.items()}, body=body)


class TestShopify:
    body = json.dumps(shopify_order()).encode()

    def test_valid_delivery(self):
        headers = shopify_headers(self.body, event_id="e-1")
        event = parse_delivery(SHOPIFY, delivery(headers, self.body), NOW)
        assert (event.type, event.provider_id) == ("orders/paid", f"orders/paid:{body_hash(self.body)}")
        assert event.aliases == ("orders/paid:e-1",)  # the key of events stored before bodies were
        assert event.payload["customer"]["first_name"] == "John"
        assert event.occurred_at == datetime(2026, 11, 20, 15, 0, 27, 877041, tzinfo=UTC)

    def test_the_body_is_the_key_whatever_its_event_id_and_another_topic_is_another_event(self):
        # The headers are unsigned: a captured body re-sent under a new X-Shopify-Event-Id is the same event.
        first = parse_delivery(SHOPIFY, delivery(shopify_headers(self.body, event_id="e-1"), self.body), NOW)
        retry = parse_delivery(SHOPIFY, delivery(shopify_headers(self.body, event_id="e-2"), self.body), NOW)
        other = shopify_headers(self.body, event_id="e-1", topic="orders/updated")
        assert (
            first.provider_id
            == retry.provider_id
            != parse_delivery(SHOPIFY, delivery(other, self.body), NOW).provider_id
        )

    def test_without_event_id_the_webhook_id_is_the_alias(self):
        headers = shopify_headers(self.body)
        del headers["X-Shopify-Event-Id"]
        event = parse_delivery(SHOPIFY, delivery(headers, self.body), NOW)
        assert event.aliases == (f"orders/paid:{headers['X-Shopify-Webhook-Id']}",)

    def test_forged_missing_and_tampered(self):
        with pytest.raises(Unauthorized, match="does not match"):
            parse_delivery(SHOPIFY, delivery(shopify_headers(self.body, secret="other"), self.body), NOW)
        headers = shopify_headers(self.body)
        del headers["X-Shopify-Hmac-Sha256"]
        with pytest.raises(Unauthorized, match="missing x-shopify-hmac-sha256"):
            parse_delivery(SHOPIFY, delivery(headers, self.body), NOW)
        with pytest.raises(Unauthorized):
            parse_delivery(SHOPIFY, delivery(shopify_headers(self.body), self.body.replace(b"paid", b"PAID")), NOW)

    def test_base64_is_compared_exactly(self):
        headers = shopify_headers(self.body)
        headers["X-Shopify-Hmac-Sha256"] = headers["X-Shopify-Hmac-Sha256"].lower()
        with pytest.raises(Unauthorized):
            parse_delivery(SHOPIFY, delivery(headers, self.body), NOW)

    def test_wrong_content_type(self):
        headers = {**shopify_headers(self.body), "Content-Type": "application/xml"}
        with pytest.raises(UnsupportedMediaType):
            parse_delivery(SHOPIFY, delivery(headers, self.body), NOW)


class TestWooCommerce:
    body = woo_order()

    def test_valid_php_encoded_delivery(self):
        assert b"\\/" in self.body
        headers = woo_headers(self.body)
        event = parse_delivery(WOO, delivery(headers, self.body), NOW)
        assert (event.type, event.provider_id) == ("order.created", f"order.created:{body_hash(self.body)}")
        assert event.aliases == (headers["X-WC-Webhook-Delivery-ID"],)
        assert event.payload["billing"]["email"] == "john.doe@yopmail.com"
        # `date_modified_gmt` carries no offset: it is UTC.
        assert event.occurred_at == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)

    @pytest.mark.parametrize(
        "headers", [FORM, {}, {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}]
    )
    def test_creation_ping_is_a_ping(self, headers):
        event = parse_delivery(WOO, delivery(headers, b"webhook_id=142"), NOW)
        assert event.ping and event.payload == {} and event.provider_id is None

    @pytest.mark.parametrize("body", [b"webhook_id=142&email=x@yopmail.com", b"webhook_id=abc", b"{}"])
    def test_anything_else_unsigned_is_refused(self, body):
        with pytest.raises((Unauthorized, UnsupportedMediaType)):
            parse_delivery(WOO, delivery(FORM if b"=" in body else {"Content-Type": "application/json"}, body), NOW)

    def test_forged_and_missing(self):
        with pytest.raises(Unauthorized, match="does not match"):
            parse_delivery(WOO, delivery(woo_headers(self.body, secret="nope"), self.body), NOW)
        headers = woo_headers(self.body)
        del headers["X-WC-Webhook-Signature"]
        with pytest.raises(Unauthorized, match="missing x-wc-webhook-signature"):
            parse_delivery(WOO, delivery(headers, self.body), NOW)

    def test_wrong_content_type(self):
        headers = {**woo_headers(self.body), "Content-Type": "text/plain"}
        with pytest.raises(UnsupportedMediaType):
            parse_delivery(WOO, delivery(headers, self.body), NOW)


class TestThriveCart:
    async def parse(self, body: bytes, headers: dict[str, str] = FORM, *, verify: bool = True):
        return parse_delivery(THRIVECART, await build_delivery("thrivecart", headers, body, {}), NOW, verify=verify)

    async def test_valid_post_reads_flat_and_nested_without_the_secret(self):
        fields = thrivecart_order("susan@yopmail.com")
        event = await self.parse(php_form(fields))
        assert event.type == "order.success"
        assert event.provider_id == f"order.success:{fields['order_id']}:000000005"
        assert event.payload["customer"]["email"] == event.payload["customer[email]"] == "susan@yopmail.com"
        assert event.payload["order"]["charges"][0]["amount"] == "19900"
        assert event.payload["purchases"] == ["Masterclass"]
        assert "thrivecart_secret" not in event.payload
        assert event.occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC)

    async def test_a_renewal_of_the_same_order_is_another_event(self):
        fields = thrivecart_order(event="order.subscription_payment")
        renewal = {**fields, "invoice_id": "000000005-2"}
        first, second = await self.parse(php_form(fields)), await self.parse(php_form(renewal))
        assert first.provider_id != second.provider_id

    async def test_wrong_secret_is_refused(self):
        with pytest.raises(Unauthorized, match="does not match"):
            await self.parse(php_form(thrivecart_order(secret="WRONG")))

    async def test_order_data_without_a_secret_is_refused(self):
        with pytest.raises(Unauthorized, match="missing thrivecart_secret"):
            await self.parse(php_form(thrivecart_order(secret=None)))

    @pytest.mark.parametrize("body", [b"", b"  ", b"test=1", b"event=ping&thrivecart_account=example"])
    async def test_set_up_posts_are_pings(self, body):
        event = await self.parse(body)
        assert event.ping and event.payload == {}

    async def test_json_is_not_thrivecart(self):
        body = json.dumps(thrivecart_order()).encode()
        with pytest.raises(UnsupportedMediaType):
            await self.parse(body, {"Content-Type": "application/json"})

    async def test_without_verify_the_secret_is_still_dropped(self):
        event = await self.parse(php_form(thrivecart_order(secret="WRONG")), verify=False)
        assert event.type == "order.success" and "thrivecart_secret" not in event.payload


class TestCalendly:
    body = calendly_body()

    def test_valid_delivery(self):
        event = parse_delivery(CALENDLY, delivery(calendly_headers(self.body), self.body), NOW)
        uri = json.loads(self.body)["payload"]["uri"]
        assert (event.type, event.provider_id) == ("invitee.created", f"invitee.created:{uri}")
        assert event.payload["payload"]["email"] == "ada@yopmail.com"
        assert event.occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC)

    def test_cancelling_the_same_invitee_is_another_event(self):
        payload = json.loads(self.body)
        payload["event"] = "invitee.canceled"
        body = json.dumps(payload).encode()
        created = parse_delivery(CALENDLY, delivery(calendly_headers(self.body), self.body), NOW)
        canceled = parse_delivery(CALENDLY, delivery(calendly_headers(body), body), NOW)
        assert canceled.provider_id == f"invitee.canceled:{payload['payload']['uri']}" != created.provider_id

    def test_stale_beyond_the_source_tolerance(self):
        fresh = calendly_headers(self.body, timestamp=int(NOW) - 170)
        assert parse_delivery(CALENDLY, delivery(fresh, self.body), NOW).type == "invitee.created"
        with pytest.raises(Unauthorized, match="stale"):
            parse_delivery(CALENDLY, delivery(calendly_headers(self.body, timestamp=int(NOW) - 181), self.body), NOW)

    @pytest.mark.parametrize("value", ["", "t=1,v2=00", "v1=00", "t=abc,v1=00", "garbage"])
    def test_malformed_or_missing_header(self, value):
        headers = {"Content-Type": "application/json", "Calendly-Webhook-Signature": value}
        with pytest.raises(Unauthorized):
            parse_delivery(CALENDLY, delivery(headers, self.body), NOW)

    def test_forged(self):
        with pytest.raises(Unauthorized, match="does not match"):
            parse_delivery(CALENDLY, delivery(calendly_headers(self.body, secret="other"), self.body), NOW)

    def test_wrong_content_type(self):
        headers = {**calendly_headers(self.body), "Content-Type": "application/x-www-form-urlencoded"}
        with pytest.raises(UnsupportedMediaType):
            parse_delivery(CALENDLY, delivery(headers, self.body), NOW)
