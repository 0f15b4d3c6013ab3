"""Sign a body the way each provider does, with the source's own secret or token, for `systeme-flow send`.

Written from the providers' documentation, like the parsers in app/sources, so a send that the service accepts
shows the source is set up as the provider will use it.
"""

from __future__ import annotations

import base64
import hmac
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from app.rules.schema import SourceConfig
from app.samples.catalog import Sample
from app.sources.base import decode_key


def _hmac(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key.encode() if isinstance(key, str) else key, message, algorithm).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def sample_body(config: SourceConfig, sample: Sample) -> bytes:
    """The sample's body for this source: a Gumroad ping carries the seller id the source checks."""
    if config.type == "gumroad" and config.seller_id:
        return Sample(
            sample.name, sample.description, {**sample.payload, "seller_id": config.seller_id}, form=True
        ).body()
    if config.type == "thrivecart" and config.secret:
        # ThriveCart proves itself with the account's secret word inside the form.
        payload = {**sample.payload, "thrivecart_secret": config.secret[0]}
        return Sample(sample.name, sample.description, payload, form=True).body()
    return sample.body()


def _json_source(config: SourceConfig, body: bytes, headers: dict[str, str], now: int) -> None:
    if config.id_field and config.id_field.startswith("header:"):
        headers.setdefault(config.id_field.removeprefix("header:"), str(uuid.uuid4()))
    signed = b""
    for index, part in enumerate(re.split(r"\{([^{}]*)\}", config.signed if config.signed != "body" else "{body}")):
        if index % 2 == 0:
            signed += part.encode()
        elif part == "body":
            signed += body
        else:
            # A header the signature covers, usually a timestamp: the current time unless given.
            signed += headers.setdefault(part.removeprefix("header:"), str(now)).encode()
    digest = _hmac(config.secret[0], signed, config.algorithm)
    signature = digest.hex() if config.encoding == "hex" else _b64(digest)
    headers[config.header or "X-Signature"] = (config.prefix or "") + signature


def _delivery_ids(kind: str, headers: dict[str, str]) -> None:
    """Every shop delivery carries its own id, which the source tells duplicates by: a second send is a new event."""
    names = ("X-Shopify-Event-Id", "X-Shopify-Webhook-Id") if kind == "shopify" else ("X-WC-Webhook-Delivery-ID",)
    for name in names:
        if not any(given.lower() == name.lower() for given in headers):
            headers[name] = str(uuid.uuid4())


def signed_request(
    config: SourceConfig, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) the provider sends with `body`; `headers` (content type, event type) are kept."""
    out = dict(headers)
    query: dict[str, str] = {}
    t = int(now if now is not None else time.time())
    secret = config.secret[0] if config.secret else ""
    kind = config.type
    if kind == "stripe":
        out["Stripe-Signature"] = f"t={t},v1={_hmac(secret, f'{t}.'.encode() + body).hex()}"
    elif kind == "standard-webhooks":
        msg_id = out.setdefault("webhook-id", f"msg_{uuid.uuid4().hex}")
        out["webhook-timestamp"] = str(t)
        out["webhook-signature"] = "v1," + _b64(_hmac(decode_key(secret), f"{msg_id}.{t}.".encode() + body))
    elif kind == "systeme":
        out["X-Webhook-Signature"] = _hmac(secret, body).hex()
        out.setdefault("X-Webhook-Message-Id", str(uuid.uuid4()))
        out.setdefault("X-Webhook-Event-Timestamp", datetime.fromtimestamp(t, UTC).isoformat())
    elif kind == "paddle":
        out["Paddle-Signature"] = f"ts={t};h1={_hmac(secret, f'{t}:'.encode() + body).hex()}"
    elif kind == "lemonsqueezy":
        out["X-Signature"] = _hmac(secret, body).hex()
    elif kind == "typeform":
        out["Typeform-Signature"] = "sha256=" + _b64(_hmac(secret, body))
    elif kind == "tally" and secret:
        out["Tally-Signature"] = _b64(_hmac(secret, body))
    elif kind == "json" and secret:
        _json_source(config, body, out, t)
    elif kind in ("shopify", "woocommerce"):
        name = "X-Shopify-Hmac-Sha256" if kind == "shopify" else "X-WC-Webhook-Signature"
        out[name] = _b64(_hmac(secret, body))
        _delivery_ids(kind, out)
    elif kind == "calendly":
        out["Calendly-Webhook-Signature"] = f"t={t},v1={_hmac(secret, f'{t}.'.encode() + body).hex()}"
    elif kind == "thrivecart":
        pass  # signed inside the body (sample_body)
    else:
        # Token sources: the provider is given a URL with ?token=... (form, Gumroad, Systeme.io automation...).
        query["token"] = config.token or ""
    return out, query
