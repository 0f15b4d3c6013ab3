"""Paddle Billing, Lemon Squeezy and Gumroad: the payment providers besides Stripe."""

from __future__ import annotations

import hmac

from app.errors import Unauthorized
from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    body_hash,
    check_fresh,
    check_token,
    dig,
    form_or_json,
    header,
    parse_iso,
    parse_json_object,
    require_json,
    text_or_none,
    timestamped_signatures,
    verify_hmac,
)


def parse_paddle(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """`Paddle-Signature: ts=<unix>;h1=<hex>[;h1=...]`, h1 = HMAC-SHA256 over `"{ts}:{body}"` (a colon)."""
    require_json(delivery)
    if verify:
        raw = header(delivery, "paddle-signature", what="is the notification destination's secret set?")
        timestamp, signatures = timestamped_signatures(
            raw, separator=";", timestamp_key="ts", signature_key="h1", what="Paddle-Signature"
        )
        check_fresh(timestamp, now, config.tolerance, what="Paddle signature")
        verify_hmac(config.secret, f"{timestamp}:".encode() + delivery.body, signatures, what="Paddle signature")
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("event_type")),
        provider_id=text_or_none(payload.get("event_id")),
        payload=payload,
        occurred_at=parse_iso(payload.get("occurred_at")),
    )


def parse_lemonsqueezy(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """`X-Signature`: hex HMAC-SHA256 of the body. No event id is sent: retries resend the same bytes."""
    require_json(delivery)
    if verify:
        verify_hmac(config.secret, delivery.body, [header(delivery, "x-signature", what="is the signing secret set?")])
    payload = parse_json_object(delivery.body)
    event_type = dig(payload, "meta.event_name") or delivery.headers.get("x-event-name")
    return IncomingEvent(
        type=text_or_none(event_type),
        provider_id=body_hash(delivery.body),
        payload=payload,
        occurred_at=parse_iso(dig(payload, "data.attributes.updated_at")),
    )


def parse_gumroad(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """Unsigned form posts: a URL token, and the seller id when the source names one."""
    if verify:
        check_token(config.token, delivery)
    payload = form_or_json(delivery, accept_json=False)
    if verify and config.seller_id is not None:
        given = str(payload.get("seller_id") or "")
        if not hmac.compare_digest(given.encode(), config.seller_id.encode()):
            raise Unauthorized("seller_id does not match this source's `seller_id`", reason="seller")
    resource = str(payload.get("resource_name") or "sale")
    sale = text_or_none(payload.get("sale_id"))
    return IncomingEvent(
        type=resource,
        # A refund ping carries the sale's id: the resource keeps it apart from the sale itself.
        provider_id=f"{resource}:{sale}" if sale else None,
        payload=payload,
        occurred_at=parse_iso(payload.get("sale_timestamp")),
    )
