"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` over `"{t}.{body}"`; `v0` is never trusted."""

from __future__ import annotations

from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    check_fresh,
    header,
    parse_json_object,
    require_json,
    text_or_none,
    timestamped_signatures,
    unix_time,
    verify_hmac,
)


def check_signature(config: SourceConfig, delivery: Delivery, now: float) -> None:
    raw = header(delivery, "stripe-signature", what="is this endpoint's URL set in Stripe?")
    timestamp, signatures = timestamped_signatures(
        raw, separator=",", timestamp_key="t", signature_key="v1", what="Stripe-Signature"
    )
    check_fresh(timestamp, now, config.tolerance, what="Stripe signature")
    verify_hmac(config.secret, f"{timestamp}.".encode() + delivery.body, signatures, what="Stripe signature")


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        check_signature(config, delivery, now)
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("type")),
        provider_id=text_or_none(payload.get("id")),
        payload=payload,
        # An absurd timestamp orders the event by its arrival instead.
        occurred_at=unix_time(payload.get("created")),
    )
