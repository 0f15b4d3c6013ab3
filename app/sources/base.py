"""What every source type shares: the raw delivery, the parsed event, HMAC checks and body parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.errors import BadRequest, Unauthorized, UnsupportedMediaType


@dataclass(frozen=True)
class Delivery:
    """One HTTP request as received: header names lower-cased, the body's exact bytes."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    # Parsed form fields, filled by the HTTP layer for urlencoded and multipart bodies.
    form: Mapping[str, Any] | None = None

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class IncomingEvent:
    type: str | None
    # The provider's id of this event, the deduplication key; None means every delivery is new.
    provider_id: str | None
    payload: dict[str, Any]
    occurred_at: datetime | None = None


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def any_equal(expected: Iterable[bytes], given: Iterable[bytes]) -> bool:
    """True when any given signature equals any expected one, each compared in constant time."""
    found = False
    for want in expected:
        for got in given:
            # No early exit: the time taken must not tell which candidate came close.
            found |= hmac.compare_digest(want, got)
    return found


def check_token(expected: str | None, delivery: Delivery) -> None:
    given = delivery.query.get("token") or delivery.headers.get("x-webhook-token") or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Unauthorized("missing or wrong token: pass it as ?token=... or in the X-Webhook-Token header")


def require_json(delivery: Delivery) -> None:
    media = delivery.media_type
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"expected a JSON body (Content-Type: application/json), got {media or 'none'!r}")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest("the JSON body must be an object")
    return value


def header(delivery: Delivery, name: str, *, what: str) -> str:
    value = delivery.headers.get(name, "").strip()
    if not value:
        raise Unauthorized(f"missing {name} header: {what}")
    return value
