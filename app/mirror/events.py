"""Contact and tag webhooks of a complete mirror's account update the mirror before the rules judge them, so a tag
removed in Systeme.io is added again by the next purchase, and a contact created there is not a miss."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes
from app.actions.mirror import Known, contact_fields, contact_tags
from app.rules.schema import RulesFile
from app.store.contacts import ContactWrite, load_contact, write_contact
from app.store.mirror import all_syncs
from app.store.models import utcnow
from app.store.plans import Unplanned
from app.systeme.registration import MIRROR_EVENTS, source_account

log = logging.getLogger(__name__)

_LEARNED = frozenset({*MIRROR_EVENTS, "CONTACT_OPT_IN"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Systeme.io's event times have whole seconds, from another clock: an event it dates within this of what we know is
# taken as what we know already (most often the echo of our own write). One without its time is dated on arrival.
SKEW = timedelta(seconds=1)


def _contact(payload: Any) -> dict[str, Any] | None:
    contact = payload.get("contact") if isinstance(payload, dict) else None
    # CONTACT_TAG_REMOVED is documented with the contact nested twice, and seen nested once: both are read.
    if isinstance(contact, dict) and isinstance(contact.get("contact"), dict):
        contact = contact["contact"]
    if not isinstance(contact, dict) or not str(contact.get("id", "")).isdigit() or not contact.get("email"):
        return None
    return contact


def _tag(payload: Any) -> tuple[int, str] | None:
    tag = payload.get("tag") if isinstance(payload, dict) else None
    if not isinstance(tag, dict) or not str(tag.get("id", "")).isdigit():
        return None
    return int(tag["id"]), str(tag.get("name") or "")


def _learn(
    known: Known | None, event_type: str | None, payload: Any, contact: dict[str, Any], at: datetime, margin: timedelta
) -> Known:
    """What the mirror knows once an event that happened `at` is applied. An event older than what we know of its
    fact (our own later write, a later read, a later webhook: they all arrive late and in any order) changes
    nothing: the echo of a tag we added must not bring it back after the refund that removed it."""
    contact_id = int(contact["id"])
    if known is None or (known.contact_id != contact_id and at > known.learned_at + margin):
        # New to the mirror, or made again after a deletion: what we granted the old one is not this one's, and the
        # payload's contact is all we know. Of a contact we know, only the change is taken: a CONTACT_CREATED for
        # our own create would otherwise undo the tag our run added since.
        known = Known(contact_id=contact_id, learned_at=at)
        known.fields, known.tags = contact_fields(contact), contact_tags(contact)
        return known
    if known.contact_id != contact_id:
        return known  # an older contact of that address, since replaced
    tag = _tag(payload)
    if tag is not None and at > known.tag_known_at(tag[0]) + margin:
        if event_type == "CONTACT_TAG_ADDED":
            known.set_tag(tag[0], tag[1], at)
        elif event_type == "CONTACT_TAG_REMOVED":
            known.set_tag(tag[0], None, at)
    return known


async def learn_from_events(
    engine: AsyncEngine, rules: RulesFile | None, pending: Sequence[Unplanned], modes: Modes | None
) -> int:
    """Apply the contact and tag events of `pending` (from `systeme` sources) to the mirror of their account, when
    that mirror is synced under the account's current mode; the number applied. Free for any other batch."""
    if rules is None or modes is None:
        return 0
    relevant = [
        e
        for e in pending
        if e.event_type in _LEARNED and getattr(rules.sources.get(e.source), "type", None) == "systeme"
    ]
    if not relevant:
        return 0
    syncs = await all_syncs(engine)
    applied = 0
    for event in sorted(relevant, key=lambda e: e.occurred_at or e.received_at or _EPOCH):
        account = source_account(rules, event.source)
        synced = syncs.get(account)
        contact = _contact(event.payload)
        if synced is None or synced.mode != modes.get(account) or contact is None:
            continue
        email = str(contact["email"]).strip().lower()
        entry = await load_contact(engine, account, email)
        at, margin = (event.occurred_at, SKEW) if event.occurred_at else (event.received_at or utcnow(), timedelta(0))
        known = Known.from_json(*entry) if entry else None
        known = _learn(known, event.event_type, event.payload, contact, at, margin)
        async with engine.begin() as conn:
            await write_contact(conn, ContactWrite(account, email, known.contact_id, known.to_json(), known.learned_at))
        applied += 1
    return applied
