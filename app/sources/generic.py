"""`json`: any JSON sender, with a token or an HMAC configured in the rules file."""

from __future__ import annotations

from app.errors import Unauthorized
from app.rules.schema import SourceConfig
from app.sources.base import (
    Delivery,
    IncomingEvent,
    check_token,
    dig,
    header,
    parse_json_object,
    require_json,
    text_or_none,
    verify_hmac,
)


def _signed_bytes(template: str, delivery: Delivery) -> bytes:
    """`body` or a template such as `{header:X-Timestamp}.{body}`: which bytes the sender signs."""
    if template == "body":
        return delivery.body
    out = b""
    rest = template
    while rest:
        start = rest.find("{")
        if start < 0:
            return out + rest.encode()
        end = rest.index("}", start)
        out += rest[:start].encode()
        name = rest[start + 1 : end]
        if name == "body":
            out += delivery.body
        else:
            out += header(delivery, name.removeprefix("header:").lower(), what="needed for the signature").encode()
        rest = rest[end + 1 :]
    return out


def parse_json(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    require_json(delivery)
    if verify:
        if config.secret:
            signature = header(delivery, (config.header or "").lower(), what="the sender's signature")
            if config.prefix:
                if not signature.startswith(config.prefix):
                    raise Unauthorized(
                        f"malformed signature: expected the prefix {config.prefix!r}", reason="malformed"
                    )
                signature = signature.removeprefix(config.prefix)
            verify_hmac(
                config.secret,
                _signed_bytes(config.signed, delivery),
                [signature],
                algorithm=config.algorithm,
                encoding=config.encoding,
            )
        else:
            check_token(config.token, delivery)
    payload = parse_json_object(delivery.body)
    provider_id = None
    if config.id_field:
        if config.id_field.startswith("header:"):
            provider_id = delivery.headers.get(config.id_field.removeprefix("header:").lower()) or None
        else:
            provider_id = text_or_none(dig(payload, config.id_field))
    return IncomingEvent(
        type=text_or_none(dig(payload, config.type_field)) if config.type_field else None,
        provider_id=provider_id,
        payload=payload,
    )
