"""What every source type shares: the raw delivery, the parsed event, the one HMAC check, body parsing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from app.errors import BadRequest, Unauthorized, UnsupportedMediaType
from app.sources.nested import nest_brackets

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Signatures one header may carry: one per active secret (two while rotating); each costs an HMAC comparison.
MAX_SIGNATURES = 16
Algorithm = Literal["sha256", "sha1", "sha512"]
Encoding = Literal["hex", "base64"]


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
    # A provider's set-up check (a test post when a webhook is added): answered 200, never stored.
    ping: bool = False
    # Other ids this event may already be stored under (see NewEvent.aliases).
    aliases: tuple[str, ...] = ()


PING = IncomingEvent(type=None, provider_id=None, payload={}, ping=True)


def any_equal(expected: Iterable[bytes], given: Iterable[bytes]) -> bool:
    """True when any given signature equals any expected one, each compared in constant time."""
    found = False
    given = list(given)
    for want in expected:
        for got in given:
            # No early exit: the time taken must not tell which candidate came close.
            found |= hmac.compare_digest(want, got)
    return found


def verify_hmac(
    keys: Iterable[str | bytes],
    message: bytes,
    given: Iterable[str],
    *,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    what: str = "signature",
) -> None:
    """The one HMAC check every signed source uses: any key (rotation) against any given signature."""
    given = list(given)
    if len(given) > MAX_SIGNATURES:
        raise Unauthorized(f"too many {what}s: at most {MAX_SIGNATURES} are read", reason="malformed")
    expected = []
    for key in keys:
        digest = hmac.new(key.encode() if isinstance(key, str) else key, message, algorithm).digest()
        expected.append(digest.hex().encode() if encoding == "hex" else base64.b64encode(digest))
    # Hex is case-insensitive; base64 is not.
    normalised = [(g.strip().lower() if encoding == "hex" else g.strip()).encode() for g in given]
    if not any_equal(expected, normalised):
        raise Unauthorized(f"{what} does not match: check the source's secret", reason="mismatch")


def decode_key(secret: str) -> bytes:
    """A `whsec_`-style base64 secret as bytes; a secret that is not base64 is used as given."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return secret.encode()


def unix_seconds(value: str) -> int | None:
    """A Unix time in seconds from a header, or None: ASCII digits only (`int` also takes "²", "١" and "1_0"),
    and few enough that the number fits a float and a datetime."""
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        return None
    return int(value)


def unix_time(value: object) -> datetime | None:
    """A Unix time from a payload or header as a datetime, or None when absent, unreadable or absurd."""
    seconds = unix_seconds(value) if isinstance(value, str) else value
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def check_fresh(timestamp: str, now: float, tolerance: int, *, what: str) -> int:
    seconds = unix_seconds(timestamp)
    if seconds is None:
        raise Unauthorized(f"malformed {what} timestamp", reason="malformed")
    if abs(now - seconds) > tolerance:
        raise Unauthorized(f"stale {what}: its timestamp is outside the {tolerance}s tolerance", reason="stale")
    return seconds


def timestamped_signatures(
    raw: str, *, separator: str, timestamp_key: str, signature_key: str, what: str
) -> tuple[str, list[str]]:
    """`t=<unix>,v1=<sig>[,v1=...]`-style headers (Stripe, Paddle): the timestamp and every signature."""
    if raw.count(separator) > 2 * MAX_SIGNATURES:
        raise Unauthorized(f"malformed {what} header: too many entries", reason="malformed")
    pairs = [part.strip().partition("=") for part in raw.split(separator)]
    timestamp = next((value for key, _, value in pairs if key == timestamp_key), None)
    signatures = [value for key, _, value in pairs if key == signature_key]
    if timestamp is None or not signatures:
        raise Unauthorized(f"malformed {what} header", reason="malformed")
    return timestamp, signatures


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 time from a payload or header, or None when absent or unreadable."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def check_token(expected: str | None, delivery: Delivery) -> None:
    given = delivery.query.get("token") or delivery.headers.get("x-webhook-token") or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Unauthorized(
            "missing or wrong token: pass it as ?token=... or in the X-Webhook-Token header", reason="token"
        )


def require_json(delivery: Delivery) -> None:
    media = delivery.media_type
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"expected a JSON body (Content-Type: application/json), got {media or 'none'!r}")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:  # syntax, encoding, and integers past Python's 4,300-digit limit
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # `[[[[...` a few thousand deep
        raise BadRequest("the JSON body is nested too deeply") from exc
    if not isinstance(value, dict):
        raise BadRequest("the JSON body must be an object")
    return value


def form_or_json(delivery: Delivery, *, accept_json: bool = True) -> dict[str, Any]:
    """Fields of a form post (urlencoded, multipart), bracketed keys also nested; or of a JSON object."""
    if delivery.media_type in FORM_TYPES and delivery.form is not None:
        return nest_brackets(delivery.form)
    if accept_json and delivery.media_type == "application/json":
        return parse_json_object(delivery.body)
    kinds = "application/x-www-form-urlencoded, multipart/form-data" + (" or application/json" if accept_json else "")
    raise UnsupportedMediaType(f"this source takes {kinds}")


def header(delivery: Delivery, name: str, *, what: str) -> str:
    value = delivery.headers.get(name, "").strip()
    if not value:
        raise Unauthorized(f"missing {name} header: {what}", reason="missing")
    return value


def body_hash(body: bytes) -> str:
    """An id for providers that give none: their retries resend the same bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def typed_body_hash(event_type: str | None, body: bytes) -> str:
    """An id for providers that give none and may send two event types with the same bytes (Systeme.io)."""
    digest = hashlib.sha256((event_type or "").encode("utf-8", "surrogatepass") + b"\n" + body).hexdigest()
    return f"sha256:{event_type or ''}:{digest}"


def dig(payload: Mapping[str, Any], path: str) -> Any:
    """`a.b.c` inside nested mappings, or None."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def text_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
