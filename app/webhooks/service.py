"""Ingest: verify, plan, store once, then dispatch. Everything before the answer is local and cheap."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.errors import NotFound, StorageUnavailable
from app.rules.schema import SourceConfig
from app.sources import SECRET_HEADERS, Delivery, parse_delivery
from app.state import AppState
from app.store.events import record_event
from app.store.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    duplicate: bool
    redirect: str | None = None


def _stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in SECRET_HEADERS}


def source_config(state: AppState, source: str) -> SourceConfig:
    config = state.rules.sources.get(source)
    if config is None:
        raise NotFound(f"no source named {source!r}: add it under `sources:` in the rules file")
    return config


async def ingest(state: AppState, *, source: str, delivery: Delivery) -> IngestResult:
    rules = state.rules
    config = source_config(state, source)
    incoming = parse_delivery(config, delivery, time.time())
    outcomes = rules.plan(source=source, event_type=incoming.type, payload=incoming.payload)
    try:
        stored = await record_event(
            state.engine,
            source=source,
            event_type=incoming.type,
            provider_id=incoming.provider_id,
            payload=incoming.payload,
            headers=_stored_headers(delivery.headers),
            occurred_at=incoming.occurred_at,
            outcomes=outcomes,
            rules_version=rules.version,
            now=utcnow(),
            dry_run=state.settings.api_mode == "dry-run",
        )
    except (DBAPIError, SQLAlchemyError, OSError, TimeoutError) as exc:
        log.error("storing an event from %s failed: %s", source, type(exc).__name__)
        raise StorageUnavailable("the event store is unavailable; nothing was stored, please retry") from exc
    log.info(
        "event stored",
        extra={
            "event_id": stored.event_id,
            "source": source,
            "type": incoming.type,
            "duplicate": stored.duplicate,
        },
    )
    pending = [(action_id, 1) for action_id, status in stored.actions if status == "pending"]
    if pending:
        try:
            await state.dispatcher.dispatch(pending)
        except Exception:
            # Stored is what counts: the sweep dispatches these actions once the queue is back.
            log.exception("dispatching actions of event %s failed; the sweep will retry", stored.event_id)
    return IngestResult(stored.event_id, stored.duplicate, config.redirect)
