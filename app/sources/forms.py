"""Form tools: plain HTML forms and Jotform (token), Typeform and Tally (signed)."""

from __future__ import annotations

from app.errors import Unauthorized
from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    check_token,
    dig,
    form_or_json,
    header,
    parse_json_object,
    require_json,
    text_or_none,
    verify_hmac,
)


def parse_form(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """A form post has no id: each submission is new, unless the form fills the source's `id_field`."""
    if verify:
        check_token(config.token, delivery)
    payload = form_or_json(delivery)
    provider_id = None
    if config.id_field and payload.get(config.id_field):
        provider_id = f"{config.id_field}:{payload[config.id_field]}"
    return IncomingEvent(type=None, provider_id=provider_id, payload=payload)


def parse_typeform(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """`Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>`."""
    require_json(delivery)
    if verify:
        raw = header(delivery, "typeform-signature", what="is the webhook's secret set in Typeform?")
        if not raw.startswith("sha256="):
            raise Unauthorized("malformed Typeform-Signature: expected 'sha256=<base64>'", reason="malformed")
        verify_hmac(config.secret, delivery.body, [raw.removeprefix("sha256=")], encoding="base64")
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("event_type")),
        provider_id=text_or_none(payload.get("event_id")),
        payload=payload,
    )


def parse_tally(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """`Tally-Signature`: base64 HMAC-SHA256 of the body when a signing secret is set; else a URL token."""
    require_json(delivery)
    if verify:
        if config.secret:
            given = header(delivery, "tally-signature", what="is the signing secret set in Tally?")
            verify_hmac(config.secret, delivery.body, [given], encoding="base64")
        else:
            check_token(config.token, delivery)
    payload = parse_json_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("eventType")),
        provider_id=text_or_none(payload.get("eventId")) or text_or_none(dig(payload, "data.responseId")),
        payload=payload,
    )
