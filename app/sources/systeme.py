"""Systeme.io webhooks (hex HMAC-SHA256 of the raw body) and its unsigned "Call a webhook" step (URL token)."""

from __future__ import annotations

from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    body_hash,
    check_token,
    header,
    parse_iso,
    parse_json_object,
    require_json,
    text_or_none,
    verify_hmac,
)


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        given = header(delivery, "x-webhook-signature", what="is the webhook's secret set in Systeme.io?")
        verify_hmac(config.secret, delivery.body, [given], what="X-Webhook-Signature")
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=delivery.headers.get("x-webhook-event") or None,
        # Stable across Systeme.io's retries; without one, the same bytes mean the same event.
        provider_id=delivery.headers.get("x-webhook-message-id") or body_hash(delivery.body),
        payload=payload,
        occurred_at=parse_iso(delivery.headers.get("x-webhook-event-timestamp")),
    )


def parse_automation(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """`{"type": "contact.course.enrolled", "data": {...}, "account": {...}, "created_at": ...}`, unsigned."""
    if verify:
        check_token(config.token, delivery)
    require_json(delivery)
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("type")),
        # No id is sent; `created_at` inside the body tells two real events apart, a retry resends the same bytes.
        provider_id=body_hash(delivery.body),
        payload=payload,
        occurred_at=parse_iso(payload.get("created_at")),
    )
