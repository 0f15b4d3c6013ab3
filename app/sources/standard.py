"""Standard Webhooks (Svix and others): HMAC-SHA256 over `"{id}.{timestamp}.{body}"` with a `whsec_` key.

Implemented on the shared HMAC check rather than with the `standardwebhooks` package, which fixes its tolerance
at five minutes and raises on non-UTF-8 bodies and malformed headers instead of answering a clean 401.
"""

from __future__ import annotations

from app.errors import Unauthorized
from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    check_fresh,
    decode_key,
    header,
    parse_json_object,
    require_json,
    text_or_none,
    unix_time,
    verify_hmac,
)


def check_signature(config: SourceConfig, delivery: Delivery, now: float) -> None:
    msg_id = header(delivery, "webhook-id", what="not a Standard Webhooks delivery")
    timestamp = header(delivery, "webhook-timestamp", what="not a Standard Webhooks delivery")
    raw = header(delivery, "webhook-signature", what="not a Standard Webhooks delivery")
    check_fresh(timestamp, now, config.tolerance, what="signature")
    given = [part[3:] for part in raw.split() if part.startswith("v1,")]
    if not given:
        raise Unauthorized("malformed webhook-signature header: expected 'v1,<base64>'", reason="malformed")
    signed = f"{msg_id}.{timestamp}.".encode() + delivery.body
    verify_hmac([decode_key(s) for s in config.secret], signed, given, encoding="base64")


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        check_signature(config, delivery, now)
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("type")),
        provider_id=delivery.headers.get("webhook-id") or None,
        payload=payload,
        occurred_at=unix_time(delivery.headers.get("webhook-timestamp", "")),
    )
