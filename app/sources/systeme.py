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
    typed_body_hash,
    verify_hmac,
)


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        given = header(delivery, "x-webhook-signature", what="is the webhook's secret set in Systeme.io?")
        verify_hmac(config.secret, delivery.body, [given], what="X-Webhook-Signature")
    payload = parse_json_object(delivery.body)
    message_id = delivery.headers.get("x-webhook-message-id")
    # Only the body is signed: the headers are believed only where the body says nothing.
    event_type = text_or_none(payload.get("type")) or delivery.headers.get("x-webhook-event") or None
    return IncomingEvent(
        type=event_type,
        # The key is the type and the signed bytes together. The bytes: a captured body re-sent under a new
        # message id is the same event, and retries resend the same bytes. The type: CONTACT_CREATED and
        # CONTACT_OPT_IN of one sign-up carry byte-identical bodies, the type only in X-Webhook-Event, and are two
        # events. Events stored long ago keyed on the message id, hence that alias; the body's hash alone (the key
        # before the type joined it) is no alias, as it would merge the very events this key tells apart.
        provider_id=typed_body_hash(event_type, delivery.body),
        payload=payload,
        occurred_at=parse_iso(delivery.headers.get("x-webhook-event-timestamp")),
        aliases=(message_id,) if message_id else (),
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
        # The type is inside the signed-by-token body here, so the body's hash already covers it.
        provider_id=body_hash(delivery.body),
        payload=payload,
        occurred_at=parse_iso(payload.get("created_at")),
    )
