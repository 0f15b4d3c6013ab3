"""Shopify, WooCommerce, ThriveCart and Calendly deliveries, built from each provider's own examples.

Shopify: the `orders/paid` example payload and the webhook headers of shopify.dev. WooCommerce: the order of the
REST API docs ("Create an order" response, which is what an `order.*` webhook sends), JSON-encoded the PHP way.
ThriveCart: the parameters of "Using webhook notifications", posted as PHP's `http_build_query` writes them.
Calendly: the invitee payload of developer.calendly.com, with Calendly's example ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.factories import php_json

SHOPIFY_SECRET = "shopify-app-client-secret"
WOO_SECRET = "woo-webhook-secret"
THRIVECART_SECRET = "TK432YH7UTR9"
CALENDLY_KEY = "3fQ8s9D-K58VuwXyAZsHykp7zBGD45JhZaLqk5h6j1M"


def _b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_order(email: str = "jon@yopmail.com", *, order_id: int | None = None) -> dict[str, Any]:
    order_id = order_id or 820982911946154508
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "email": email,
        "contact_email": email,
        "created_at": "2026-11-20T10:00:00-05:00",
        "currency": "USD",
        "financial_status": "paid",
        "name": "#9999",
        "order_number": 1234,
        "total_price": "199.00",
        "customer": {
            "id": 115310627314723954,
            "email": email,
            "first_name": "John",
            "last_name": "Smith",
            "state": "disabled",
        },
        "line_items": [
            {
                "id": 866550311766439020,
                "name": "Masterclass",
                "price": "199.00",
                "product_id": 788032119674292922,
                "quantity": 1,
                "sku": "MASTERCLASS",
                "title": "Masterclass",
                "variant_id": 642667041472713922,
            }
        ],
    }


def shopify_headers(
    body: bytes, *, topic: str = "orders/paid", secret: str = SHOPIFY_SECRET, event_id: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": _b64(secret, body),
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": "2026-11-20T15:00:27.877041743Z",
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
    }


def woo_order(email: str = "john.doe@yopmail.com", *, order_id: int = 727) -> bytes:
    """An `order.created` body: the REST API's order, as `wp_json_encode` writes it (`/` escaped)."""
    order = {
        "id": order_id,
        "parent_id": 0,
        "number": str(order_id),
        "order_key": "wc_order_58d2d042d1d",
        "created_via": "rest-api",
        "status": "processing",
        "currency": "USD",
        "date_created": "2017-03-22T16:28:02",
        "date_created_gmt": "2017-03-22T19:28:02",
        "date_modified": "2017-03-22T16:28:08",
        "date_modified_gmt": "2017-03-22T19:28:08",
        "total": "29.35",
        "customer_id": 0,
        "billing": {
            "first_name": "John",
            "last_name": "Doe",
            "address_1": "969 Market",
            "city": "San Francisco",
            "state": "CA",
            "postcode": "94103",
            "country": "US",
            "email": email,
            "phone": "(555) 555-5555",
        },
        "payment_method": "bacs",
        "payment_method_title": "Direct Bank Transfer",
        "date_paid_gmt": "2017-03-22T19:28:08",
        "line_items": [
            {"id": 315, "name": "Woo Single #1", "product_id": 93, "quantity": 2, "total": "6.00", "sku": ""},
            {"id": 316, "name": "Ship Your Idea", "product_id": 22, "quantity": 1, "total": "12.00", "sku": "Bar3"},
        ],
        "_links": {"self": [{"href": f"https://example.com/wp-json/wc/v3/orders/{order_id}"}]},
    }
    return php_json(order)


def woo_headers(body: bytes, *, secret: str = WOO_SECRET, topic: str = "order.created") -> dict[str, str]:
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.1 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": "https://example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": _b64(secret, body),
        "X-WC-Webhook-ID": "142",
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }


def php_form(value: dict[str, Any]) -> bytes:
    """PHP's `http_build_query`: nested arrays as `customer[email]`, lists as `purchases[0]`."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, item: Any) -> None:
        if isinstance(item, dict | list):
            for key, inner in item.items() if isinstance(item, dict) else enumerate(item):
                walk(f"{prefix}[{key}]" if prefix else str(key), inner)
        else:
            pairs.append((prefix, "" if item is None else str(item)))

    walk("", value)
    return urlencode(pairs).encode()


def thrivecart_order(
    email: str = "susan@yopmail.com", *, event: str = "order.success", secret: str | None = THRIVECART_SECRET
) -> dict[str, Any]:
    order_id = str(uuid.uuid4().int % 10**8)
    fields: dict[str, Any] = {
        "event": event,
        "mode": "live",
        "mode_int": "2",
        "thrivecart_account": "example",
        "thrivecart_secret": secret,
        "date": "2026-11-20 10:00:00",
        "date_iso8601": "2026-11-20T10:00:00+00:00",
        "date_unix": "1795168800",
        "base_product": "7",
        "base_product_name": "Masterclass",
        "base_product_label": "Masterclass (lifetime access)",
        "base_product_owner": "72586",
        "base_payment_plan": "10521",
        "order_id": order_id,
        "invoice_id": "000000005",
        "currency": "USD",
        "customer_id": "16099259",
        "customer": {
            "id": "16099259",
            "email": email,
            "address": {"country": "US"},
            "first_name": "Susan",
            "last_name": "Flores",
            "name": "Susan Flores",
            "checkbox_confirmation": "false",
        },
        "affiliate": "null",
        "order": {
            "id": order_id,
            "invoice_id": "000000005",
            "processor": "stripe",
            "total": "19900",
            "total_str": "199.00",
            "charges": [{"type": "single", "name": "Masterclass", "reference": "7", "amount": "19900"}],
        },
        "purchases": ["Masterclass"],
        "purchase_map": ["product-7"],
        "purchase_map_flat": "product-7",
    }
    if secret is None:
        del fields["thrivecart_secret"]
    return fields


def calendly_invitee(email: str = "ada@yopmail.com", *, event: str = "invitee.created") -> dict[str, Any]:
    scheduled = "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2"
    return {
        "created_at": "2026-11-20T10:00:00.000000Z",
        "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA",
        "event": event,
        "payload": {
            "cancel_url": "https://calendly.com/cancellations/AAAAAAAAAAAAAAAA",
            "created_at": "2026-11-20T10:00:00.000000Z",
            "email": email,
            "event": scheduled,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "name": "Ada Lovelace",
            "new_invitee": None,
            "old_invitee": None,
            "questions_and_answers": [{"answer": "Launch plan", "position": 0, "question": "What shall we discuss?"}],
            "reschedule_url": "https://calendly.com/reschedulings/AAAAAAAAAAAAAAAA",
            "rescheduled": False,
            "status": "active" if event == "invitee.created" else "canceled",
            "text_reminder_number": None,
            "timezone": "Europe/Paris",
            "tracking": {"utm_campaign": None, "utm_source": None, "utm_medium": None, "salesforce_uuid": None},
            "updated_at": "2026-11-20T10:00:00.000000Z",
            "uri": f"{scheduled}/invitees/{uuid.uuid4().hex[:16].upper()}",
            "scheduled_event": {
                "uri": scheduled,
                "name": "15 Minute Meeting",
                "status": "active",
                "start_time": "2026-11-24T14:15:00.000000Z",
                "end_time": "2026-11-24T14:30:00.000000Z",
                "event_type": "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2",
                "location": {"type": "physical", "location": "Calendly Office"},
            },
        },
    }


def calendly_headers(body: bytes, *, secret: str = CALENDLY_KEY, timestamp: int | None = None) -> dict[str, str]:
    t = timestamp if timestamp is not None else int(time.time())
    signature = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Calendly-Webhook-Signature": f"t={t},v1={signature}"}


def calendly_body(**kwargs: Any) -> bytes:
    return json.dumps(calendly_invitee(**kwargs)).encode()
