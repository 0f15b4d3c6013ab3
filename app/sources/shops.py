"""Checkout and shop platforms: Shopify, WooCommerce and ThriveCart, each as its provider documents it.

- Shopify (shopify.dev, "Deliver webhooks through HTTPS" and "Ignore duplicate webhooks"): `X-Shopify-Hmac-Sha256`
  is the base64 HMAC-SHA256 of the raw body with the app's client secret (or the key shown under Settings →
  Notifications → Webhooks); the topic is `X-Shopify-Topic`; `X-Shopify-Event-Id` is the same across retries and
  is Shopify's advice for spotting duplicates (`X-Shopify-Webhook-Id` where it is absent). None of these headers
  is signed, so the body's hash is the key and the event id only an alias.
- WooCommerce (`WC_Webhook::deliver`, `generate_signature` and `deliver_ping` in
  plugins/woocommerce/includes/class-wc-webhook.php, and the REST API docs' "Webhooks"): `X-WC-Webhook-Signature`
  is the base64 HMAC-SHA256 of the JSON body with the webhook's secret, the topic is `X-WC-Webhook-Topic`, each
  delivery has an `X-WC-Webhook-Delivery-ID`; neither header is signed. Creating a webhook posts the unsigned
  body `webhook_id=N` and keeps the webhook only if the answer is exactly 200.
- ThriveCart (support.thrivecart.com, "Using webhook notifications"): a form post carrying `thrivecart_secret`,
  the account's secret word (Settings → API & Webhooks), and `event` (`order.success`, `order.refund`,
  `order.subscription_payment`, ...). Adding a webhook sends a HEAD and a POST that must both get a 2xx.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from app.errors import Unauthorized
from app.rules.schema import SourceConfig
from app.sources.base import (
    PING,
    Delivery,
    IncomingEvent,
    any_equal,
    body_hash,
    form_or_json,
    header,
    parse_iso,
    parse_json_object,
    require_json,
    text_or_none,
    verify_hmac,
)

_WOO_PING = re.compile(rb"webhook_id=[0-9]{1,20}")
# Fields that make a post an order notification rather than ThriveCart's set-up check.
_ORDER_FIELDS = ("order_id", "customer_id", "customer", "order")


def parse_shopify(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        given = header(delivery, "x-shopify-hmac-sha256", what="is this URL a Shopify webhook subscription?")
        verify_hmac(config.secret, delivery.body, [given], encoding="base64", what="X-Shopify-Hmac-Sha256")
    payload = parse_json_object(delivery.body)
    # Only the body is signed: the topic and the ids are headers anyone can change on a captured body.
    topic = delivery.headers.get("x-shopify-topic") or None
    event_id = delivery.headers.get("x-shopify-event-id") or delivery.headers.get("x-shopify-webhook-id")
    return IncomingEvent(
        type=topic,
        # The signed bytes are the key, so a captured body re-sent under a new event id is a duplicate. One store
        # event can reach several topics with the same body (orders/paid and orders/updated): the topic keeps them
        # apart, which is why rules check the body's own fields (financial_status) rather than the topic alone.
        # Events stored before keyed on topic and event id: the alias still finds their retries.
        provider_id=_keyed(topic, delivery.body),
        payload=payload,
        occurred_at=parse_iso(delivery.headers.get("x-shopify-triggered-at")),
        aliases=(f"{topic}:{event_id}",) if event_id else (),
    )


def parse_woocommerce(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    if "x-wc-webhook-signature" not in delivery.headers and _WOO_PING.fullmatch(delivery.body.strip()):
        return PING
    require_json(delivery)
    if verify:
        given = header(delivery, "x-wc-webhook-signature", what="is the webhook's secret set in WooCommerce?")
        verify_hmac(config.secret, delivery.body, [given], encoding="base64", what="X-WC-Webhook-Signature")
    payload = parse_json_object(delivery.body)
    # As for Shopify: the topic and the delivery id are unsigned headers, the body (with its date_modified) is the
    # key; the topic keeps order.created and order.updated of the same order apart. Events stored before keyed on
    # the delivery id: the alias still finds their retries.
    topic = delivery.headers.get("x-wc-webhook-topic") or None
    delivery_id = delivery.headers.get("x-wc-webhook-delivery-id")
    return IncomingEvent(
        type=topic,
        provider_id=_keyed(topic, delivery.body),
        payload=payload,
        occurred_at=_gmt(payload.get("date_modified_gmt") or payload.get("date_created_gmt")),
        aliases=(delivery_id,) if delivery_id else (),
    )


def _keyed(topic: str | None, body: bytes) -> str:
    return f"{topic}:{body_hash(body)}" if topic else body_hash(body)


def _gmt(value: Any) -> datetime | None:
    """WooCommerce's `*_gmt` times carry no offset: they are UTC."""
    when = parse_iso(value)
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _is_order(fields: dict[str, Any]) -> bool:
    return any(key in fields or any(k.startswith(f"{key}[") for k in fields) for key in _ORDER_FIELDS)


def parse_thrivecart(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """The secret word travels in the form itself; it is checked, then left out of the stored payload."""
    if not delivery.body.strip():
        return PING
    fields = form_or_json(delivery, accept_json=False)
    given = fields.pop("thrivecart_secret", None)
    if not isinstance(given, str) or not given:
        if _is_order(fields):
            raise Unauthorized("missing thrivecart_secret: is this a ThriveCart webhook?", reason="missing")
        return PING
    if verify and not any_equal((s.encode() for s in config.secret), [given.encode()]):
        raise Unauthorized("thrivecart_secret does not match: check the source's secret word", reason="mismatch")
    event = text_or_none(fields.get("event"))
    order = text_or_none(fields.get("order_id"))
    invoice = text_or_none(fields.get("invoice_id"))
    key = ":".join(part for part in (event, order, invoice) if part)
    return IncomingEvent(
        type=event,
        # A renewal reuses its order's id with a new invoice id (000000141-6): both keep events apart.
        provider_id=key if event and order else body_hash(delivery.body),
        payload=fields,
        occurred_at=parse_iso(fields.get("date_iso8601")),
    )
