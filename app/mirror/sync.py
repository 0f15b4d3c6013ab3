"""`systeme-flow sync`: read an account whole into the contact mirror, so "not in the mirror" means "not in the
account", then keep it current with what changed.

A full read (app/mirror/full.py) lists every contact (with its tags and fields), and the enrollments of each course
and the memberships of each community the rules in force refer to, saving its progress with every page. A later
read, under the same mode, takes only what the API can say is new: contacts registered after the last one seen
(`registeredAfter`, with a second of overlap since the API's times have whole seconds), and enrollments and
memberships with ids above the last ones seen (listed newest first, stopping at what was seen). What it cannot see
is a change to something already read: a tag added or removed by hand on an old contact, a field edited, a contact
or an enrollment deleted. Those are healed by our own writes (a 404 or 422 on a request built from the mirror drops
the entry and the step runs again from fresh reads), by the account's contact and tag webhooks, and by the full
read the service does every MIRROR_SYNC_HOURS.

A sync's requests are low priority, and each may wait for the quota as long as any request may (MAX_WAIT_SECONDS),
however long the sync's requests have waited together: during a launch it reads with what the buyers leave.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.actions.mirror import Access, Known
from app.actions.resolve import community_id, course_id
from app.mirror.full import read_full
from app.mirror.report import OVERLAP, SyncReport, contact_email, registered
from app.mirror.targets import targets
from app.rules.schema import RulesFile
from app.store.mirror import SyncRecord, load_entries, load_progress, load_sync, save_sync, write_entries
from app.store.models import utcnow
from app.store.statuses import Priority
from app.systeme.client import SystemeClient, SystemeSession

# An unfinished full read older than this starts over rather than go on (the service passes its sync period).
RESUME_WITHIN = timedelta(hours=24)


class _Sync:
    def __init__(
        self, api: SystemeSession, existing: dict[str, Known], now: datetime, synced: tuple[list[int], list[int]]
    ) -> None:
        self.api, self.existing, self.now = api, existing, now
        self.courses, self.communities = synced
        self.read: dict[str, Known] = {}
        self.latest: datetime | None = None

    async def contacts(self, after: datetime | None) -> None:
        params = {"registeredAfter": (after - OVERLAP).isoformat()} if after is not None else {}
        async for contact in self.api.paginate("/api/contacts", params):
            email = contact_email(contact)
            if email is None:
                continue
            entry = Known.from_contact(contact, self.now, created=False)
            before = self.existing.get(email)
            if before is not None and before.contact_id == entry.contact_id:
                # As in a full read (app/mirror/full.py): our grants and the synced access facts stay.
                entry.grants = before.grants
                entry.courses = {c: a for c, a in before.courses.items() if c in self.courses}
                entry.communities = {c: a for c, a in before.communities.items() if c in self.communities}
            self.read[email] = entry
            seen = registered(contact)
            if seen is not None and (self.latest is None or seen > self.latest):
                self.latest = seen

    async def listing(
        self, path: str, query: dict[str, Any], key: str, since: int | None
    ) -> tuple[dict[int, int], int]:
        """(contact id -> grant id, the highest id seen) of one course's enrollments or one community's members;
        with `since`, only those with a higher id (newest first, stopping at the first one seen before), without
        it (a course the rules use since the last sync) all of them."""
        wanted = query[key]
        found: dict[int, int] = {}
        top = since or 0
        async for item in self.api.paginate(path, query, order="asc" if since is None else "desc"):
            item_id = int(item["id"])
            if since is not None and item_id <= since:
                break
            top = max(top, item_id)
            # Filtered again here: a filter the API ignored must not grant someone else's access.
            if (item.get(key) or {}).get("id") not in (wanted, None):
                continue
            contact = (item.get("contact") or {}).get("id")
            if isinstance(contact, int):
                found[contact] = item_id
        return found, top


def _apply(
    facts_of: str, entries: dict[str, Known], read: set[str], target: int, listed: dict[int, int], whole: bool
) -> set[str]:
    """Set what the listing says of `target` on every entry; the emails whose entry changed."""
    touched: set[str] = set()
    for email, entry in entries.items():
        facts: dict[int, Access] = getattr(entry, facts_of)
        state: Access
        if entry.contact_id in listed:
            state = listed[entry.contact_id]
        elif whole or (email in read and target not in facts):
            # A join we asked for is listed only once Systeme.io made it: not listed yet is not absent.
            state = None if whole and target in facts and facts[target] is None else False
        else:
            continue
        if facts.get(target, "unset") != state:
            facts[target] = state
            touched.add(email)
    return touched


async def sync_account(
    engine: AsyncEngine,
    client: SystemeClient,
    *,
    account: str,
    mode: str,
    rules: RulesFile | None,
    full: bool = False,
    resume_within: timedelta = RESUME_WITHIN,
) -> SyncReport:
    """Read the account into the mirror (`full`, or incremental after a sync under the same `mode`) and record it."""
    started = time.monotonic()
    # The service's own traffic: a sync during a launch leaves the last of the quota to buyers, and waits for it
    # request by request, never against a total the whole sync would exceed.
    api = client.session(priority=Priority.LOW, per_request=True)
    previous = await load_sync(engine, account)
    wanted = targets(rules, account)
    courses = sorted({await course_id(api, ref) for ref in wanted.courses})
    communities = sorted({await community_id(api, ref) for ref in wanted.communities})
    if full or previous is None or previous.mode != mode:
        ids = {"enrollments": courses, "memberships": communities}
        report = await read_full(engine, api, account=account, mode=mode, targets=ids, within=resume_within)
    else:
        report = await _incremental(engine, api, previous, (courses, communities))
    report.templated = sorted(wanted.templated)
    report.seconds = time.monotonic() - started
    return report


async def _incremental(
    engine: AsyncEngine, api: SystemeSession, previous: SyncRecord, synced: tuple[list[int], list[int]]
) -> SyncReport:
    now, account, cursor = utcnow(), previous.account, previous.cursor
    report = SyncReport(account, full=False)
    loaded = await load_entries(engine, account)
    existing = {email: Known.from_json(cid, facts, learned) for email, (cid, facts, learned, _) in loaded.items()}
    # Each entry's version as read: the final write leaves alone what a run wrote while the account was read.
    versions = {email: entry[3] for email, entry in loaded.items()}
    sync = _Sync(api, existing, now, synced)
    after = datetime.fromisoformat(cursor["registered"]) if cursor.get("registered") else None
    await sync.contacts(after)
    marks: dict[str, dict[str, int]] = {"enrollments": {}, "memberships": {}}
    listings: list[tuple[str, int, dict[int, int], bool]] = []
    for kind, path, key, ids in (
        ("enrollments", "/api/school/enrollments", "course", synced[0]),
        ("memberships", "/api/community/memberships", "community", synced[1]),
    ):
        seen = {str(k): int(v) for k, v in (cursor.get(kind) or {}).items()}
        for target in ids:
            since = seen.get(str(target))
            listed, top = await sync.listing(path, {key: target}, key, since)
            marks[kind][str(target)] = top
            listings.append(("courses" if kind == "enrollments" else "communities", target, listed, since is None))
            (report.enrollments if kind == "enrollments" else report.memberships)[target] = len(listed)
    entries = {**existing, **sync.read}
    known_ids = {entry.contact_id for entry in entries.values()}
    if any(cid not in known_ids for _, _, listed, _ in listings for cid in listed):
        # Granted to a contact registered after the contacts were read: read what is new once more.
        extra = _Sync(api, existing, now, synced)
        await extra.contacts(sync.latest or after)
        sync.read.update(extra.read)
        entries.update(extra.read)
        sync.latest = max((t for t in (sync.latest, extra.latest) if t is not None), default=None)
    touched = set(sync.read)
    for facts_of, target, listed, whole in listings:
        touched |= _apply(facts_of, entries, set(sync.read), target, listed, whole)
    for email in touched:
        entries[email].learned_at = now
    latest = sync.latest or after
    record = SyncRecord(
        account=account,
        mode=previous.mode,
        synced_at=now,
        full_at=previous.full_at,
        cursor={"registered": latest.isoformat() if latest else None, **marks},
        requests=len(api.calls),
    )
    # A full read still under way (an earlier one interrupted) keeps its progress.
    progress = await load_progress(engine, account)
    async with engine.begin() as conn:
        rows = [
            (email, entries[email].contact_id, entries[email].to_json(), now, versions.get(email, 0))
            for email in sorted(touched)
        ]
        await write_entries(conn, account, rows)
        await save_sync(conn, record, progress=progress)
    report.contacts_read, report.contacts_known = len(sync.read), len(entries)
    report.requests = len(api.calls)
    return report
