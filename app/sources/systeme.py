"""Systeme.io webhooks: lowercase hex HMAC-SHA256 of the raw body in `X-Webhook-Signature`."""

from __future__ import annotations

import hashlib
from datetime import datetime

from app.errors import Unauthorized
from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    any_equal,
    header,
    hmac_sha256,
    parse_json_object,
    require_json,
)


def check_signature(config: SourceConfig, delivery: Delivery) -> None:
    given = header(delivery, "x-webhook-signature", what="is the webhook's secret set in Systeme.io?")
    expected = [hmac_sha256(s.encode(), delivery.body).hex().encode() for s in config.secret]
    if not any_equal(expected, [given.lower().encode()]):
        raise Unauthorized("X-Webhook-Signature does not match: check the webhook's secret")


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        check_signature(config, delivery)
    payload = parse_json_object(delivery.body)
    # The message id is stable across Systeme.io's retries; without one, the same bytes mean the same event.
    message_id = delivery.headers.get("x-webhook-message-id") or "sha256:" + hashlib.sha256(delivery.body).hexdigest()
    return IncomingEvent(
        type=delivery.headers.get("x-webhook-event") or None,
        provider_id=message_id,
        payload=payload,
        occurred_at=_timestamp(delivery.headers.get("x-webhook-event-timestamp")),
    )
