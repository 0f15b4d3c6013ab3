"""Ingest: verify, store once, answer; the planner (app/pipeline/planner.py) judges the event right after the answer."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from app.errors import AppError, BadRequest, Forbidden, NotFound, StorageUnavailable, TooManyRequests, Unauthorized
from app.rules.schema import DEFAULT_ACCOUNT, SourceConfig
from app.sources import SECRET_HEADERS, Delivery, parse_delivery
from app.sources.base import check_token
from app.state import AppState
from app.store.events import NewEvent
from app.store.models import new_id, utcnow
from app.store.outages import STORAGE_OUTAGES
from app.store.plans import Unplanned
from app.store.storable import storable, storable_text, storable_time
from app.telemetry import EVENTS, RATE_LIMITED, SIGNATURE_FAILURES
from app.webhooks.ratelimit import client_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    event_id: str | None
    duplicate: bool
    redirect: str | None = None
    # A provider's set-up check: answered 200, nothing stored.
    ping: bool = False


def _stored_headers(headers: Mapping[str, str], config: SourceConfig) -> dict[str, str]:
    secret = SECRET_HEADERS | ({config.header.lower()} if config.header else set())
    return {k: v for k, v in headers.items() if k not in secret}


async def check_rate(
    state: AppState, *, source: str, config: SourceConfig, peer: str | None, headers: Mapping[str, str]
) -> None:
    """Unsigned sources answer 429 past their per-client rate; signed ones are limited by their signature."""
    rate = config.rate
    if rate is None:
        return
    client = client_address(peer, headers, state.trusted_proxies)
    try:
        wait = await state.limiter.hit(f"{source}:{client}", *rate)
    except Exception:
        # A limiter outage must not turn real sign-ups away: fail open, loudly.
        log.exception("rate limiter unavailable; letting the post through")
        return
    if wait is not None:
        RATE_LIMITED.labels(source).inc()
        raise TooManyRequests(f"too many posts to {source!r} from this address: retry in {wait}s", retry_after=wait)


def check_sender(
    state: AppState, *, source: str, config: SourceConfig, peer: str | None, headers: Mapping[str, str]
) -> None:
    """A source with `allow_ips` takes deliveries only from those addresses, before anything else is read."""
    if not config.allow_ips:
        return
    client = client_address(peer, headers, state.trusted_proxies)
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        address = None
    if address is None or not any(address in network for network in config.allowed_networks):
        SIGNATURE_FAILURES.labels(source, "address").inc()
        EVENTS.labels(source, "rejected").inc()
        raise Forbidden(f"deliveries to {source!r} are taken only from the addresses in its `allow_ips`")


def check_token_first(
    *, source: str, config: SourceConfig, headers: Mapping[str, str], query: Mapping[str, str]
) -> None:
    """A token source's token is checked before its body is read or parsed: a stranger's post costs nothing."""
    if config.signed_by_secret or not config.token:
        return
    try:
        check_token(config.token, Delivery(headers=headers, body=b"", query=query))
    except Unauthorized as exc:
        SIGNATURE_FAILURES.labels(source, exc.reason).inc()
        EVENTS.labels(source, "rejected").inc()
        raise


def _bounded_id(provider_id: str | None) -> str | None:
    """Provider ids fit the column: a longer one, or one a database would refuse, is replaced by its hash."""
    if provider_id is None or (len(provider_id) <= 250 and storable_text(provider_id) == provider_id):
        return provider_id
    return "sha256:" + hashlib.sha256(provider_id.encode("utf-8", "surrogatepass")).hexdigest()


def answer_head(state: AppState, source: str) -> None:
    """`HEAD /hooks/{source}`: URL validators (ThriveCart's among them) check the endpoint exists."""
    source_config(state, source)
    EVENTS.labels(source, "ping").inc()


def source_config(state: AppState, source: str) -> SourceConfig:
    config = state.rules.sources.get(source)
    if config is None:
        raise NotFound(f"no source named {source!r}: add it under `sources:` in the rules file")
    return config


async def ingest(state: AppState, *, source: str, delivery: Delivery) -> IngestResult:
    rules = state.rules
    config = source_config(state, source)
    try:
        incoming = parse_delivery(config, delivery, time.time())
    except Unauthorized as exc:
        SIGNATURE_FAILURES.labels(source, exc.reason).inc()
        EVENTS.labels(source, "rejected").inc()
        raise
    except AppError:
        EVENTS.labels(source, "rejected").inc()
        raise
    if incoming.ping:
        EVENTS.labels(source, "ping").inc()
        log.info("set-up ping on %s: answered, nothing stored", source)
        return IngestResult(None, False, ping=True)
    if config.honeypot and incoming.payload.get(config.honeypot):
        # A bot filled the hidden field: answer exactly like a success, store nothing.
        EVENTS.labels(source, "dropped").inc()
        log.info("honeypot hit on %s: dropped", source)
        return IngestResult(new_id("evt"), False, config.redirect)
    try:
        # The rules see what is stored, so what they render (tags, fields) is storable too.
        payload = storable(incoming.payload)
    except BadRequest:
        EVENTS.labels(source, "rejected").inc()
        raise
    event_type = storable_text(incoming.type[:200]) if incoming.type else None
    received_at = utcnow()
    # The time the event row holds: a plan made later (here or by a sweep) counts from the same instant.
    occurred_at = storable_time(incoming.occurred_at)
    # The mode each account is in as the event arrives: its work belongs to it (app/accounts/modes.py).
    modes = state.clients.modes
    try:
        # Stored alone: the rules judge it right after the answer (app/pipeline/planner.py).
        stored = await state.writer.write(
            NewEvent(
                source=source,
                event_type=event_type,
                provider_id=_bounded_id(incoming.provider_id),
                payload=payload,
                headers=storable(_stored_headers(delivery.headers, config)),
                occurred_at=occurred_at,
                rules_version=rules.version,
                received_at=received_at,
                aliases=tuple(a for a in map(_bounded_id, incoming.aliases) if a),
                modes=modes,
            )
        )
    except STORAGE_OUTAGES as exc:
        log.error("storing an event from %s failed: %s", source, type(exc).__name__)
        raise StorageUnavailable("the event store is unavailable; nothing was stored, please retry") from exc
    EVENTS.labels(source, "duplicate" if stored.duplicate else "stored").inc()
    log.info(
        "event stored",
        extra={
            "event_id": stored.event_id,
            "source": source,
            "type": incoming.type,
            "duplicate": stored.duplicate,
        },
    )
    if not stored.duplicate:
        mode = modes.get(DEFAULT_ACCOUNT)
        state.planner.submit(Unplanned(stored.event_id, source, event_type, payload, occurred_at, received_at, mode))
    return IngestResult(stored.event_id, stored.duplicate, config.redirect)
