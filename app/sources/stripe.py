"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` over `"{t}.{body}"`."""

from __future__ import annotations

from datetime import UTC, datetime

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


def check_signature(config: SourceConfig, delivery: Delivery, now: float) -> None:
    raw = header(delivery, "stripe-signature", what="is this endpoint's URL set in Stripe?")
    timestamp: str | None = None
    signatures: list[bytes] = []
    for part in raw.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":  # v0 is Stripe's test scheme and is never trusted
            signatures.append(value.lower().encode())
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise Unauthorized("malformed Stripe-Signature header")
    if abs(now - int(timestamp)) > config.tolerance:
        raise Unauthorized(f"stale Stripe signature: timestamp is outside the {config.tolerance}s tolerance")
    signed = timestamp.encode() + b"." + delivery.body
    expected = [hmac_sha256(s.encode(), signed).hex().encode() for s in config.secret]
    if not any_equal(expected, signatures):
        raise Unauthorized("Stripe signature does not match: check the endpoint's signing secret (whsec_...)")


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        check_signature(config, delivery, now)
    payload = parse_json_object(delivery.body)
    created = payload.get("created")
    occurred = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
    event_id = payload.get("id")
    return IncomingEvent(
        type=str(payload.get("type") or "") or None,
        provider_id=str(event_id) if event_id else None,
        payload=payload,
        occurred_at=occurred,
    )
