"""Standard Webhooks (Svix and others): HMAC-SHA256 over `"{id}.{timestamp}.{body}"` with a `whsec_` key.

Implemented here rather than with the `standardwebhooks` package, which fixes its tolerance at five minutes and
raises on non-UTF-8 bodies and malformed headers instead of answering a clean 401.
"""

from __future__ import annotations

import base64
import binascii
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


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        # Some senders hand out raw secrets; use the bytes as given rather than refusing every delivery.
        return secret.encode()


def check_signature(config: SourceConfig, delivery: Delivery, now: float) -> None:
    msg_id = header(delivery, "webhook-id", what="not a Standard Webhooks delivery")
    timestamp = header(delivery, "webhook-timestamp", what="not a Standard Webhooks delivery")
    raw = header(delivery, "webhook-signature", what="not a Standard Webhooks delivery")
    if not timestamp.isdigit():
        raise Unauthorized("malformed webhook-timestamp header")
    if abs(now - int(timestamp)) > config.tolerance:
        raise Unauthorized(f"stale signature: webhook-timestamp is outside the {config.tolerance}s tolerance")
    given = [part[3:].encode() for part in raw.split() if part.startswith("v1,")]
    if not given:
        raise Unauthorized("malformed webhook-signature header: expected 'v1,<base64>'")
    signed = f"{msg_id}.{timestamp}.".encode() + delivery.body
    expected = [base64.b64encode(hmac_sha256(_key(s), signed)) for s in config.secret]
    if not any_equal(expected, given):
        raise Unauthorized("signature does not match: check the source's whsec_ secret")


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        check_signature(config, delivery, now)
    payload = parse_json_object(delivery.body)
    timestamp = delivery.headers.get("webhook-timestamp", "")
    return IncomingEvent(
        type=str(payload.get("type") or "") or None,
        provider_id=delivery.headers.get("webhook-id") or None,
        payload=payload,
        occurred_at=datetime.fromtimestamp(int(timestamp), UTC) if timestamp.isdigit() else None,
    )
