"""Signed deliveries for every source type, in each provider's documented scheme and payload shape."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from tests.factories import (
    FORM_TOKEN,
    php_json,
    standard_headers,
    stripe_checkout,
    stripe_headers,
    systeme_headers,
    systeme_sale,
)
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

PADDLE_SECRET = "pdl_ntfset_secret_key"
LEMON_SECRET = "lemon-signing-secret"
TYPEFORM_SECRET = "typeform-secret"
TALLY_SECRET = "tally-signing-secret"
JSON_SECRET = "json-hmac-secret"
SELLER = "seller-abc=="

SOURCES_YAML = f"""
  paddle:     {{ type: paddle, secret: "{PADDLE_SECRET}" }}
  lemon:      {{ type: lemonsqueezy, secret: "{LEMON_SECRET}" }}
  typeform:   {{ type: typeform, secret: "{TYPEFORM_SECRET}" }}
  tally:      {{ type: tally, secret: "{TALLY_SECRET}" }}
  gumroad:    {{ type: gumroad, token: "{FORM_TOKEN}", seller_id: "{SELLER}" }}
  automation: {{ type: systeme-automation, token: "{FORM_TOKEN}" }}
  jotform:    {{ type: form, token: "{FORM_TOKEN}", id_field: submissionID, honeypot: website, rate_limit: unlimited }}
  zap:        {{ type: json, token: "{FORM_TOKEN}", type_field: event, id_field: id }}
  hmacjson:   {{ type: json, secret: "{JSON_SECRET}", header: X-Hub-Signature-256, prefix: "sha256=", type_field: action, id_field: "header:X-Delivery" }}
  shop:       {{ type: shopify, secret: "{SHOPIFY_SECRET}" }}
  woo:        {{ type: woocommerce, secret: "{WOO_SECRET}" }}
  thrivecart: {{ type: thrivecart, secret: ["old-secret-word", "{THRIVECART_SECRET}"] }}
  calendly:   {{ type: calendly, secret: "{CALENDLY_KEY}", tolerance: 180 }}
  hmacb64:    {{ type: json, secret: "{JSON_SECRET}", header: X-Sig, algorithm: sha512, encoding: base64, signed: "{{header:X-Ts}}.{{body}}", id_field: nonce }}
"""


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _b64(secret: str, message: bytes, algorithm: str = "sha256") -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, algorithm).digest()).decode()


@dataclass
class Signed:
    source: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    type: str | None = None
    # Tampering that must be refused with 401: new headers (and query) with a wrong signature or token.
    forged_headers: dict[str, str] = field(default_factory=dict)
    forged_query: dict[str, str] | None = None
    # Sources whose secret travels in the body (ThriveCart): the body with a wrong one.
    forged_body: bytes | None = None
    stale: dict[str, str] | None = None

    @property
    def path(self) -> str:
        return f"/hooks/{self.source}" + (f"?{urlencode(self.query)}" if self.query else "")


def paddle(*, ts: int | None = None, secret: str = PADDLE_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "event_id": f"evt_{uuid.uuid4().hex[:26]}",
            "event_type": "transaction.completed",
            "occurred_at": "2026-11-20T10:00:00.000000Z",
            "notification_id": f"ntf_{uuid.uuid4().hex[:26]}",
            "data": {
                "id": "txn_01h04vsbhqc62t8hmd4z3b578c",
                "status": "completed",
                "customer_id": "ctm_01h04vsc0qhwtsbsxh3422wjs4",
                "currency_code": "EUR",
                "details": {"totals": {"total": "19900", "currency_code": "EUR"}},
                "items": [{"price": {"id": "pri_01", "description": "Masterclass"}, "quantity": 1}],
                "custom_data": {"email": "paddle@yopmail.com"},
            },
        }
    ).encode()
    t = ts if ts is not None else int(time.time())
    return body, {
        "Content-Type": "application/json",
        "Paddle-Signature": f"ts={t};h1={_hex(secret, f'{t}:'.encode() + body)}",
    }


def all_sources() -> list[Signed]:
    """One valid delivery per source type, with its forged (and stale) variants."""
    out = []
    body = json.dumps(stripe_checkout()).encode()
    old = int(time.time()) - 400
    out.append(
        Signed(
            "stripe",
            body,
            stripe_headers(body),
            type="checkout.session.completed",
            forged_headers=stripe_headers(body, secret="whsec_wrong"),
            stale=stripe_headers(body, timestamp=old),
        )
    )
    body = b'{"type": "user.created", "data": {"email": "p@yopmail.com"}}'
    msg = f"msg_{uuid.uuid4().hex}"
    out.append(
        Signed(
            "partner",
            body,
            standard_headers(body, msg_id=msg),
            type="user.created",
            forged_headers={**standard_headers(body, msg_id=msg), "webhook-signature": "v1,AAAA"},
            stale=standard_headers(body, msg_id=msg, timestamp=old),
        )
    )
    body = php_json(systeme_sale())
    headers = systeme_headers(body)
    out.append(
        Signed("systeme", body, headers, type="SALE_NEW", forged_headers={**headers, "X-Webhook-Signature": "00" * 32})
    )
    body, headers = paddle()
    out.append(
        Signed(
            "paddle",
            body,
            headers,
            type="transaction.completed",
            forged_headers=paddle(secret="wrong")[1],
            stale=paddle(ts=old)[1],
        )
    )
    body = json.dumps(
        {
            "meta": {"event_name": "order_created", "custom_data": {"customer_id": 25}},
            "data": {
                "type": "orders",
                "id": str(uuid.uuid4().int % 10**6),
                "attributes": {
                    "user_email": "lemon@yopmail.com",
                    "total": 1999,
                    "status": "paid",
                    "updated_at": "2026-11-20T10:00:00.000000Z",
                },
            },
        }
    ).encode()
    out.append(
        Signed(
            "lemon",
            body,
            {
                "Content-Type": "application/json",
                "X-Signature": _hex(LEMON_SECRET, body),
                "X-Event-Name": "order_created",
            },
            type="order_created",
            forged_headers={"Content-Type": "application/json", "X-Signature": _hex("wrong", body)},
        )
    )
    body = json.dumps(
        {
            "event_id": f"01{uuid.uuid4().hex[:24].upper()}",
            "event_type": "form_response",
            "form_response": {
                "form_id": "lT4Z3j",
                "token": "a3a12ec67a1ace1b5a8d2b6e1d2f1a11",
                "submitted_at": "2026-11-20T10:00:00Z",
                "definition": {
                    "id": "lT4Z3j",
                    "title": "Webinar sign-up",
                    "fields": [{"id": "Auxd6Itc4qgK", "type": "email", "ref": "email"}],
                },
                "answers": [
                    {
                        "type": "email",
                        "email": "typeform@yopmail.com",
                        "field": {"id": "Auxd6Itc4qgK", "type": "email", "ref": "email"},
                    }
                ],
            },
        }
    ).encode()
    out.append(
        Signed(
            "typeform",
            body,
            {"Content-Type": "application/json", "Typeform-Signature": "sha256=" + _b64(TYPEFORM_SECRET, body)},
            type="form_response",
            forged_headers={"Content-Type": "application/json", "Typeform-Signature": "sha256=" + _b64("wrong", body)},
        )
    )
    body = json.dumps(
        {
            "eventId": str(uuid.uuid4()),
            "eventType": "FORM_RESPONSE",
            "createdAt": "2026-11-20T10:00:00.000Z",
            "data": {
                "responseId": "2wgx4n",
                "formId": "VwbNEw",
                "fields": [
                    {"key": "question_3ErWKR", "label": "Email", "type": "INPUT_EMAIL", "value": "tally@yopmail.com"}
                ],
            },
        }
    ).encode()
    out.append(
        Signed(
            "tally",
            body,
            {"Content-Type": "application/json", "Tally-Signature": _b64(TALLY_SECRET, body)},
            type="FORM_RESPONSE",
            forged_headers={"Content-Type": "application/json", "Tally-Signature": _b64("wrong", body)},
        )
    )
    sale = {
        "seller_id": SELLER,
        "product_id": "32-nPAicqbLj8B_WswVlMw==",
        "product_name": "Masterclass",
        "permalink": "masterclass",
        "email": "gumroad@yopmail.com",
        "price": "19900",
        "currency": "usd",
        "quantity": "1",
        "sale_id": f"FO8TXN-{uuid.uuid4().hex[:8]}==",
        "sale_timestamp": "2026-11-20T10:00:00Z",
        "order_number": "524459935",
        "refunded": "false",
        "test": "false",
    }
    out.append(
        Signed(
            "gumroad",
            urlencode(sale).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
            {"token": FORM_TOKEN},
            type="sale",
            forged_query={"token": "wrong"},
        )
    )
    body = json.dumps(
        {
            "type": "contact.course.enrolled",
            "data": {"contact": {"email": "auto@yopmail.com"}, "course": {"id": 101}},
            "account": {"email": "owner@yopmail.com"},
            "created_at": f"2026-11-20T10:00:{uuid.uuid4().int % 60:02d}+00:00",
        }
    ).encode()
    out.append(
        Signed(
            "automation",
            body,
            {"Content-Type": "application/json", "X-Webhook-Token": FORM_TOKEN},
            type="contact.course.enrolled",
            forged_headers={"Content-Type": "application/json", "X-Webhook-Token": "nope"},
        )
    )
    form = {"submissionID": str(uuid.uuid4().int % 10**12), "email": "jotform@yopmail.com", "website": ""}
    out.append(
        Signed(
            "jotform",
            urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
            {"token": FORM_TOKEN},
            forged_query={"token": FORM_TOKEN + "x"},
        )
    )
    body = json.dumps({"event": "lead.created", "id": str(uuid.uuid4()), "email": "zap@yopmail.com"}).encode()
    out.append(
        Signed(
            "zap",
            body,
            {"Content-Type": "application/json", "X-Webhook-Token": FORM_TOKEN},
            type="lead.created",
            forged_headers={"Content-Type": "application/json"},
        )
    )
    body = json.dumps({"action": "opened", "email": "gh@yopmail.com"}).encode()
    delivery = str(uuid.uuid4())
    out.append(
        Signed(
            "hmacjson",
            body,
            {
                "Content-Type": "application/json",
                "X-Delivery": delivery,
                "X-Hub-Signature-256": "sha256=" + _hex(JSON_SECRET, body),
            },
            type="opened",
            forged_headers={
                "Content-Type": "application/json",
                "X-Delivery": delivery,
                "X-Hub-Signature-256": _hex(JSON_SECRET, body),
            },
        )
    )
    body = json.dumps({"email": "b64@yopmail.com", "nonce": uuid.uuid4().hex}).encode()
    ts = str(int(time.time()))
    out.append(
        Signed(
            "hmacb64",
            body,
            {
                "Content-Type": "application/json",
                "X-Ts": ts,
                "X-Sig": _b64(JSON_SECRET, f"{ts}.".encode() + body, "sha512"),
            },
            forged_headers={
                "Content-Type": "application/json",
                "X-Ts": str(int(ts) + 1),
                "X-Sig": _b64(JSON_SECRET, f"{ts}.".encode() + body, "sha512"),
            },
        )
    )
    out.extend(shop_sources(old))
    return out


def shop_sources(old: int) -> list[Signed]:
    """Shopify, WooCommerce, ThriveCart and Calendly, from their own examples (tests/shop_payloads.py)."""
    body = json.dumps(shopify_order(order_id=uuid.uuid4().int % 10**18)).encode()
    shopify = Signed(
        "shop", body, shopify_headers(body), type="orders/paid", forged_headers=shopify_headers(body, secret="wrong")
    )
    body = woo_order(order_id=uuid.uuid4().int % 10**6)
    woo = Signed("woo", body, woo_headers(body), type="order.created", forged_headers=woo_headers(body, secret="x"))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    thrivecart = Signed(
        "thrivecart",
        php_form(thrivecart_order()),
        form,
        type="order.success",
        forged_headers=form,
        forged_body=php_form(thrivecart_order(secret="WRONGSECRET1")),
    )
    body = calendly_body()
    calendly = Signed(
        "calendly",
        body,
        calendly_headers(body),
        type="invitee.created",
        forged_headers=calendly_headers(body, secret="wrong"),
        stale=calendly_headers(body, timestamp=old + 150),  # 250 s old: past this source's 180 s tolerance
    )
    return [shopify, woo, thrivecart, calendly]


def rules_with_every_source(base: str) -> str:
    return base.replace("rules:\n", SOURCES_YAML.lstrip("\n") + "rules:\n", 1)
