"""Each source type verifies the raw bytes with the provider's documented scheme."""

from __future__ import annotations

import json
import time

import pytest

from app.errors import BadRequest, Unauthorized, UnsupportedMediaType
from app.rules.schema import SourceConfig
from app.sources import Delivery, parse_delivery
from app.sources.base import body_hash, typed_body_hash
from tests.factories import (
    FORM_TOKEN,
    PARTNER_SECRET,
    STRIPE_SECRET,
    SYSTEME_SECRET,
    php_json,
    standard_headers,
    stripe_checkout,
    stripe_headers,
    systeme_headers,
    systeme_sale,
)

NOW = time.time()
STRIPE = SourceConfig(type="stripe", secret=(STRIPE_SECRET,))
PARTNER = SourceConfig(type="standard-webhooks", secret=(PARTNER_SECRET,))
SYSTEME = SourceConfig(type="systeme", secret=(SYSTEME_SECRET,))
FORM = SourceConfig(type="form", token=FORM_TOKEN, id_field="submission_id")


def delivery(headers: dict[str, str], body: bytes, **kwargs) -> Delivery:
    return Delivery(headers={k.lower(): v for k, v in headers.items()}, body=body, **kwargs)


class TestStripe:
    body = json.dumps(stripe_checkout(event_id="evt_1")).encode()

    def test_valid_delivery(self):
        event = parse_delivery(STRIPE, delivery(stripe_headers(self.body), self.body), NOW)
        assert (event.type, event.provider_id) == ("checkout.session.completed", "evt_1")
        assert event.payload["data"]["object"]["payment_status"] == "paid"
        assert event.occurred_at is not None

    def test_forged_signature(self):
        headers = stripe_headers(self.body, secret="whsec_other")
        with pytest.raises(Unauthorized, match="does not match"):
            parse_delivery(STRIPE, delivery(headers, self.body), NOW)

    def test_body_changed_after_signing(self):
        headers = stripe_headers(self.body)
        with pytest.raises(Unauthorized):
            parse_delivery(STRIPE, delivery(headers, self.body.replace(b"paid", b"PAID")), NOW)

    def test_stale_timestamp(self):
        headers = stripe_headers(self.body, timestamp=int(NOW) - 301)
        with pytest.raises(Unauthorized, match="stale"):
            parse_delivery(STRIPE, delivery(headers, self.body), NOW)

    @pytest.mark.parametrize("value", ["", "t=abc,v1=00", "v1=00", "t=1", "garbage"])
    def test_malformed_or_missing_header(self, value):
        headers = {"Content-Type": "application/json", "Stripe-Signature": value}
        with pytest.raises(Unauthorized):
            parse_delivery(STRIPE, delivery(headers, self.body), NOW)

    def test_any_of_several_signatures_and_secrets_passes(self):
        rotated = SourceConfig(type="stripe", secret=("whsec_old", STRIPE_SECRET))
        headers = stripe_headers(self.body)
        headers["Stripe-Signature"] = headers["Stripe-Signature"].replace(",v1=", ",v0=dead,v1=beef,v1=")
        assert parse_delivery(rotated, delivery(headers, self.body), NOW).provider_id == "evt_1"

    def test_wrong_content_type(self):
        headers = {**stripe_headers(self.body), "Content-Type": "text/plain"}
        with pytest.raises(UnsupportedMediaType):
            parse_delivery(STRIPE, delivery(headers, self.body), NOW)

    def test_signed_body_that_is_not_an_object(self):
        body = b"[1, 2]"
        with pytest.raises(BadRequest, match="must be an object"):
            parse_delivery(STRIPE, delivery(stripe_headers(body), body), NOW)


class TestStandardWebhooks:
    body = b'{"type": "user.created", "data": {"email": "p@yopmail.com"}}'

    def test_valid_delivery(self):
        event = parse_delivery(PARTNER, delivery(standard_headers(self.body, msg_id="msg_1"), self.body), NOW)
        assert (event.type, event.provider_id) == ("user.created", "msg_1")

    def test_forged(self):
        headers = standard_headers(self.body, secret="whsec_" + "QUJDREVGRw==")
        with pytest.raises(Unauthorized):
            parse_delivery(PARTNER, delivery(headers, self.body), NOW)

    def test_stale(self):
        headers = standard_headers(self.body, timestamp=int(NOW) - 600)
        with pytest.raises(Unauthorized, match="stale"):
            parse_delivery(PARTNER, delivery(headers, self.body), NOW)

    def test_non_utf8_body_is_a_clean_401_when_unsigned(self):
        body = b"\xff\xfe{}"
        headers = {**standard_headers(self.body), "webhook-signature": "v1,AAAA"}
        with pytest.raises(Unauthorized):
            parse_delivery(PARTNER, delivery(headers, body), NOW)

    @pytest.mark.parametrize("value", ["", "v2,abc", "v1abc", "    "])
    def test_malformed_signature_header(self, value):
        headers = {**standard_headers(self.body), "webhook-signature": value}
        with pytest.raises(Unauthorized):
            parse_delivery(PARTNER, delivery(headers, self.body), NOW)


class TestSysteme:
    # PHP writes `/` as `\/` and non-ASCII as \uXXXX; the signature covers those exact bytes.
    body = php_json(systeme_sale())

    def test_valid_php_escaped_delivery(self):
        assert b"\\/" in self.body and b"\\u00eb" in self.body
        headers = systeme_headers(self.body, message_id="m-1")
        event = parse_delivery(SYSTEME, delivery(headers, self.body), NOW)
        assert (event.type, event.aliases) == ("SALE_NEW", ("m-1",))
        assert event.provider_id == typed_body_hash("SALE_NEW", self.body) != body_hash(self.body)
        assert event.payload["customer"]["fields"]["first_name"] == "Zoë"
        assert event.payload["customer"]["sourceUrl"] == "https://shop.example.com/funnel/vip-offer"

    def test_the_key_is_the_event_type_and_the_body(self):
        body = php_json({"contact": {"id": 5501, "email": "zoe@gmail.com", "fields": [], "tags": []}})

        def key(event: str, message_id: str) -> str | None:
            headers = systeme_headers(body, message_id=message_id, event=event)
            return parse_delivery(SYSTEME, delivery(headers, body), NOW).provider_id

        # One sign-up fires both with byte-identical bodies: two events. A replay under a new message id: one.
        assert key("CONTACT_CREATED", "m-1") != key("CONTACT_OPT_IN", "m-2")
        assert key("CONTACT_OPT_IN", "m-2") == key("CONTACT_OPT_IN", "m-3")

    def test_upper_case_hex_is_accepted(self):
        headers = systeme_headers(self.body)
        headers["X-Webhook-Signature"] = headers["X-Webhook-Signature"].upper()
        assert parse_delivery(SYSTEME, delivery(headers, self.body), NOW).type == "SALE_NEW"

    def test_reserialised_body_does_not_verify(self):
        headers = systeme_headers(self.body)
        reserialised = json.dumps(json.loads(self.body)).encode()
        with pytest.raises(Unauthorized):
            parse_delivery(SYSTEME, delivery(headers, reserialised), NOW)

    def test_missing_signature(self):
        headers = systeme_headers(self.body)
        del headers["X-Webhook-Signature"]
        with pytest.raises(Unauthorized, match="missing x-webhook-signature"):
            parse_delivery(SYSTEME, delivery(headers, self.body), NOW)


class TestForm:
    def test_token_in_query(self):
        d = delivery(
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"",
            query={"token": FORM_TOKEN},
            form={"email": "a@b.co"},
        )
        event = parse_delivery(FORM, d, NOW)
        assert (event.type, event.provider_id, event.payload) == (None, None, {"email": "a@b.co"})

    def test_token_in_header_and_id_field(self):
        headers = {"Content-Type": "application/json", "X-Webhook-Token": FORM_TOKEN}
        event = parse_delivery(FORM, delivery(headers, b'{"submission_id": "s-9", "email": "a@b.co"}'), NOW)
        assert event.provider_id == "submission_id:s-9"

    @pytest.mark.parametrize("query", [{}, {"token": "wrong"}, {"token": FORM_TOKEN[:-1]}])
    def test_missing_or_wrong_token(self, query):
        d = delivery({"Content-Type": "application/x-www-form-urlencoded"}, b"", query=query, form={})
        with pytest.raises(Unauthorized, match="token"):
            parse_delivery(FORM, d, NOW)

    def test_unsupported_content_type(self):
        d = delivery({"Content-Type": "text/csv"}, b"a,b", query={"token": FORM_TOKEN})
        with pytest.raises(UnsupportedMediaType):
            parse_delivery(FORM, d, NOW)
