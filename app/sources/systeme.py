"""Systeme.io webhooks (hex HMAC-SHA256 of the raw body) and its unsigned "Call a webhook" step (URL token)."""

from __future__ import annotations

import json
from typing import Any

from app.errors import BadRequest
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
    """Systeme.io's automation and workflow "Call a webhook" step, unsigned, in the shapes it is seen in.

    `{"type": "contact.course.enrolled", "data": {...}, "created_at": ...}`; also a one-element JSON array around
    that object, dotted types (`contact.optin.completed`, `customer.sale.completed`,
    `subscription.payment.failed`) and a contact's `fields` as an object or as a list of `{slug, value}`: the
    list is read as the object, so one rule reads `data.contact.fields.first_name` whichever shape arrives.
    """
    if verify:
        check_token(config.token, delivery)
    require_json(delivery)
    payload = _automation_object(delivery.body)
    return IncomingEvent(
        type=text_or_none(payload.get("type")) or text_or_none(payload.get("event")),
        # No id is sent; `created_at` inside the body tells two real events apart, a retry resends the same bytes.
        # The type is inside the signed-by-token body here, so the body's hash already covers it.
        provider_id=body_hash(delivery.body),
        payload=payload,
        occurred_at=parse_iso(payload.get("created_at")),
    )


def _automation_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("the JSON body is nested too deeply") from exc
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict):
        raise BadRequest("the JSON body must be an object, or an array of exactly one object")
    for holder in _field_holders(value):
        holder["fields"] = _fields_object(holder["fields"])
    return value


def _field_holders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects that may carry a contact's `fields`: the event, its contact, its data and the data's contact."""
    candidates: list[Any] = [payload, payload.get("contact"), payload.get("data")]
    data = payload.get("data")
    if isinstance(data, dict):
        candidates.append(data.get("contact"))
    return [c for c in candidates if isinstance(c, dict) and isinstance(c.get("fields"), list)]


def _fields_object(items: list[Any]) -> dict[str, Any] | list[Any]:
    """`[{"slug": "first_name", "value": "Ada"}]` as `{"first_name": "Ada"}`; a list of another shape is kept."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict):
            return items
        key = item.get("slug", item.get("field", item.get("name")))
        if not isinstance(key, str) or not key:
            return items
        out[key] = item.get("value")
    return out
