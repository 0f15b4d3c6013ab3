"""Samples of the shop and booking sources (Shopify, WooCommerce, ThriveCart, Calendly), in their documented shapes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from app.samples.catalog import Sample


def _iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def shopify_samples() -> list[Sample]:
    # Shopify's webhook reference (shopify.dev, orders/paid): the Order resource, prices as decimal strings; the
    # topic, event id and trigger time in X-Shopify-* headers.
    # One order for every call: `send shopify refund` is a separate command from `send shopify order-paid`, and the
    # refund must name the order it refunds (the id is the reference's own example).
    order = {
        "id": 820982911946154508,
        "email": "ada@yopmail.com",
        "contact_email": "ada@yopmail.com",
        "created_at": _iso(),
        "currency": "USD",
        "financial_status": "paid",
        "name": "#1001",
        "total_price": "199.00",
        "customer": {"email": "ada@yopmail.com", "first_name": "Ada", "last_name": "Lovelace"},
        "line_items": [{"name": "Masterclass", "price": "199.00", "quantity": 1, "sku": "MASTERCLASS"}],
    }
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Event-Id": str(uuid.uuid4())}
    headers["X-Shopify-Triggered-At"] = _iso()
    # Shopify has no refund topic for an order: a full refund is an orders/updated with the new financial status.
    refunded = {**order, "financial_status": "refunded", "updated_at": _iso()}
    updated = {**headers, "X-Shopify-Topic": "orders/updated", "X-Shopify-Event-Id": str(uuid.uuid4())}
    return [
        Sample("order-paid", "an orders/paid webhook", order, headers=headers),
        Sample("refund", "an orders/updated webhook of that order, fully refunded", refunded, headers=updated),
    ]


def woocommerce_samples() -> list[Sample]:
    # WooCommerce's REST API order schema (woocommerce.github.io/woocommerce-rest-api-docs, orders), the body of its
    # order.created webhook; the topic and delivery id in X-WC-Webhook-* headers.
    order_id = int(time.time()) % 100_000
    order = {
        "id": order_id,
        "status": "processing",
        "currency": "USD",
        "date_modified_gmt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "total": "199.00",
        "billing": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@yopmail.com"},
        "line_items": [{"name": "Masterclass", "product_id": 93, "quantity": 1, "total": "199.00"}],
    }
    headers = {"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex}
    return [Sample("order-created", "an order.created webhook", order, headers=headers)]


def thrivecart_samples() -> list[Sample]:
    # ThriveCart's webhook notifications guide (support.thrivecart.com): a PHP-style form post, `event` such as
    # order.success and order.refund, `mode` live or test, totals in cents beside a formatted `total_str`.
    order_id = str(int(time.time() * 1000) % 10**9)
    order: dict[str, Any] = {
        "event": "order.success",
        "mode": "live",
        "base_product": "7",
        "base_product_name": "Masterclass",
        "order_id": order_id,
        "invoice_id": "000000001",
        "currency": "USD",
        "customer": {"email": "ada@yopmail.com", "first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace"},
        "order": {"id": order_id, "total": "19900", "total_str": "199.00"},
    }
    refund = {**order, "event": "order.refund"}
    return [
        Sample("order-success", "an order.success notification (a PHP-style form post)", order, form=True),
        Sample("order-refund", "an order.refund notification", refund, form=True),
    ]


def calendly_samples() -> list[Sample]:
    # Calendly's API v2 webhook payload reference (developer.calendly.com, invitee.created): `event`,
    # `created_at`, the Invitee in `payload` with its URI and the scheduled event.
    scheduled = f"https://api.calendly.com/scheduled_events/{uuid.uuid4().hex[:16].upper()}"
    booking: dict[str, Any] = {
        "created_at": _iso(),
        "event": "invitee.created",
        "payload": {
            "email": "ada@yopmail.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "name": "Ada Lovelace",
            "status": "active",
            "timezone": "Europe/Paris",
            "uri": f"{scheduled}/invitees/{uuid.uuid4().hex[:16].upper()}",
            "scheduled_event": {"uri": scheduled, "name": "Discovery call", "start_time": _iso()},
        },
    }
    canceled = {
        **booking,
        "event": "invitee.canceled",
        "payload": {
            **booking["payload"],
            "status": "canceled",
            "rescheduled": False,
            "cancellation": {"canceled_by": "Ada Lovelace", "reason": "Something came up", "canceler_type": "invitee"},
        },
    }
    return [
        Sample("invitee-created", "a booking (invitee.created)", booking),
        Sample("invitee-canceled", "that booking cancelled, not rescheduled (invitee.canceled)", canceled),
    ]
