"""Calendly webhook subscriptions, as developer.calendly.com documents them ("Webhook Signatures").

`Calendly-Webhook-Signature: t=<unix>,v1=<hex>`: v1 is the hex HMAC-SHA256, keyed with the subscription's signing
key, of `"{t}.{raw body}"` (Stripe's scheme); deliveries outside `tolerance` are refused (Calendly's example
allows three minutes; the source default is the project's 300 s). The body is `{"event": "invitee.created",
"created_at": ..., "created_by": ..., "payload": {"uri": <the invitee>, "email": ..., ...}}`; a rescheduling
sends `invitee.canceled` for the old invitee and `invitee.created` for the new one, so the event name and the
invitee's URI together identify a delivery.
"""

from __future__ import annotations

from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    body_hash,
    check_fresh,
    dig,
    header,
    parse_iso,
    parse_json_object,
    require_json,
    text_or_none,
    timestamped_signatures,
    verify_hmac,
)


def check_signature(config: SourceConfig, delivery: Delivery, now: float) -> None:
    raw = header(delivery, "calendly-webhook-signature", what="was the subscription created with a signing_key?")
    timestamp, signatures = timestamped_signatures(
        raw, separator=",", timestamp_key="t", signature_key="v1", what="Calendly-Webhook-Signature"
    )
    check_fresh(timestamp, now, config.tolerance, what="Calendly signature")
    verify_hmac(config.secret, f"{timestamp}.".encode() + delivery.body, signatures, what="Calendly signature")


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        check_signature(config, delivery, now)
    payload = parse_json_object(delivery.body)
    event = text_or_none(payload.get("event"))
    uri = text_or_none(dig(payload, "payload.uri"))
    return IncomingEvent(
        type=event,
        provider_id=f"{event}:{uri}" if event and uri else body_hash(delivery.body),
        payload=payload,
        occurred_at=parse_iso(payload.get("created_at")),
    )
