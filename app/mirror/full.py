"""A full read of an account, in parts: where it stopped is saved with every page, so a read that fails (a request
that waited too long for the quota, the API down) or whose process dies goes on, under the same mode, from the page
it reached instead of starting over.

Each page is written with the read's progress in one transaction (`cursor["full"]` of the account's mirror_syncs
row, or a row of mode NEVER before the first sync). Every write is against the versions read before the page was
asked for, so what a run wrote meanwhile (newer than the page) is left alone (tests/actions/test_sync_race.py).
1. Contacts, in id order: each page's entries are written at once. The mirror's entries whose contact id falls in
   the page's range and which the page does not hold are candidates for deletion, with their version then.
2. Each course's enrollments and each community's memberships, in id order: each page's grants are written at
   once, and the contacts it lists kept in the progress; once the listing ends, every other entry is marked
   without it, in the same part as its last page.
3. The contacts registered since step 1 that a listing named are read; then the candidates still at the version
   they had when found missing are deleted, and the sync is recorded. Deletions only come from a read that
   completed: an interrupted one leaves its candidates in the progress, untouched.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.actions.mirror import Access, Known
from app.mirror.report import OVERLAP, SyncReport, contact_email, registered
from app.store.mirror import (
    SyncRecord,
    known_count,
    load_entries,
    load_progress,
    save_progress,
    save_sync,
    write_entries,
)
from app.store.models import utcnow
from app.systeme.client import SystemeSession
from app.systeme.errors import ApiError

Loaded = dict[str, tuple[int, dict[str, Any], datetime, int]]  # email -> (contact id, facts, learned at, version)
Row = tuple[str, int, dict[str, Any], datetime, int]
# (kind, as the progress and the sync's cursor name it; the entry's facts; path; the listing's filter)
LISTINGS = (
    ("enrollments", "courses", "/api/school/enrollments", "course"),
    ("memberships", "communities", "/api/community/memberships", "community"),
)


def _fresh(mode: str, now: datetime) -> dict[str, Any]:
    return {
        "mode": mode,
        "started": now.isoformat(),
        "requests": 0,
        "pages": 0,
        "contacts": {"after": None, "done": False, "read": 0, "latest": None},
        "gone": {},  # email -> version when found missing
        "listings": {"enrollments": {}, "memberships": {}},
    }


def _resumable(progress: dict[str, Any] | None, mode: str, now: datetime, within: timedelta) -> bool:
    """A full read left unfinished under this mode, begun less than `within` ago (a read is not stretched over
    more than one sync period: what its first pages read would be that old)."""
    if not progress or progress.get("mode") != mode:
        return False
    try:
        return now - datetime.fromisoformat(str(progress["started"])) < within
    except (KeyError, ValueError):
        return False


def _later(one: str | None, other: datetime | None) -> str | None:
    if other is None:
        return one
    return other.isoformat() if one is None or other > datetime.fromisoformat(one) else one


class _Part:
    """One part of a full read: what this process reads of it, from where the last part stopped."""

    def __init__(
        self, engine: AsyncEngine, api: SystemeSession, account: str, progress: dict[str, Any], now: datetime
    ) -> None:
        self.engine, self.api, self.account, self.progress, self.now = engine, api, account, progress, now
        self.spent = int(progress["requests"])  # by the earlier parts

    @property
    def requests(self) -> int:
        return self.spent + len(self.api.calls)

    async def save(
        self, rows: list[Row], *, gone: list[tuple[str, int]] | None = None, done: SyncRecord | None = None
    ) -> None:
        self.progress["requests"] = self.requests
        async with self.engine.begin() as conn:
            await write_entries(conn, self.account, rows, gone=gone or [])
            if done is None:
                await save_progress(conn, self.account, self.progress, now=self.now)
            else:
                await save_sync(conn, done)

    def _missing(self, loaded: Loaded, held: set[str], low: Any, high: Any) -> None:
        """Entries whose contact id is in (low, high] (None: unbounded) and which a page of that range did not
        hold: deleted once the read completes, if no one wrote them since."""
        for email, (contact_id, _facts, _learned, version) in loaded.items():
            if email in held or (low is not None and contact_id <= int(low)):
                continue
            if high is None or contact_id <= int(high):
                self.progress["gone"][email] = version

    async def contacts(self, synced: dict[str, set[int]]) -> None:
        state = self.progress["contacts"]
        if state["done"]:
            return
        loaded = await load_entries(self.engine, self.account)
        start = {} if state["after"] is None else {"startingAfter": state["after"]}
        async for page in self.api.pages("/api/contacts", start):
            if not page:
                break
            rows: list[Row] = []
            for contact in page:
                email = contact_email(contact)
                if email is None:
                    continue
                entry = Known.from_contact(contact, self.now, created=False)
                before = loaded.get(email)
                if before is not None and before[0] == entry.contact_id:
                    # Grants are what our writes made (a refund removes those very ids); access facts of what a
                    # sync reads stay until a listing says otherwise, and others are not kept: a complete mirror
                    # trusts its facts at any age, so only those a sync keeps current.
                    old = Known.from_json(*before[:3])
                    entry.grants = old.grants
                    entry.courses = {c: a for c, a in old.courses.items() if c in synced["courses"]}
                    entry.communities = {c: a for c, a in old.communities.items() if c in synced["communities"]}
                rows.append((email, entry.contact_id, entry.to_json(), self.now, before[3] if before else 0))
                state["latest"] = _later(state["latest"], registered(contact))
            self._missing(loaded, {row[0] for row in rows}, state["after"], page[-1]["id"])
            state["after"] = page[-1]["id"]
            state["read"] += len(rows)
            self.progress["pages"] += 1
            await self.save(rows)
        # The last page said there is no more: an entry beyond it is of a contact deleted since it was read.
        self._missing(loaded, set(), state["after"], None)
        state["done"] = True
        await self.save([])

    def _marked(
        self, entry: tuple[int, dict[str, Any], datetime, int], facts_of: str, target: int, listed: int | None
    ) -> tuple[int, dict[str, Any], datetime, int] | None:
        """The entry with `target` listed (its grant id) or not (None), to write; None when that changes nothing."""
        known = Known.from_json(*entry[:3])
        facts: dict[int, Access] = getattr(known, facts_of)
        state: Access = listed
        if listed is None:
            # A join we asked for is listed only once Systeme.io made it: not listed yet is not absent.
            state = None if target in facts and facts[target] is None else False
        if facts.get(target, "unset") == state:
            return None
        facts[target] = state
        return (entry[0], known.to_json(), self.now, entry[3])

    async def listing(self, kind: str, facts_of: str, path: str, key: str, target: int) -> int:
        """Read one course's enrollments or one community's members; the number listed."""
        state = self.progress["listings"][kind].setdefault(
            str(target), {"after": None, "top": 0, "listed": [], "unplaced": {}, "done": False, "count": 0}
        )
        if state["done"]:
            return int(state["count"])
        loaded = await load_entries(self.engine, self.account)
        email_of = {entry[0]: email for email, entry in loaded.items()}
        listed = set(state["listed"])
        query: dict[str, Any] = {key: target}
        if state["after"] is not None:
            query["startingAfter"] = state["after"]
        async for page in self.api.pages(path, query):
            if not page:
                break
            rows: list[Row] = []
            for item in page:
                item_id = int(item["id"])
                state["top"] = max(state["top"], item_id)
                # Filtered again here: a filter the API ignored must not grant someone else's access.
                contact = (item.get("contact") or {}).get("id")
                if (item.get(key) or {}).get("id") not in (target, None) or not isinstance(contact, int):
                    continue
                listed.add(contact)
                email = email_of.get(contact)
                if email is None:
                    state["unplaced"][str(contact)] = item_id  # registered after the contacts were read: step 3
                elif (row := self._marked(loaded[email], facts_of, target, item_id)) is not None:
                    rows.append((email, *row))
            state["after"], state["listed"] = page[-1]["id"], sorted(listed)
            self.progress["pages"] += 1
            await self.save(rows)
        # Whole: every entry it does not list lacks the access (checked against the versions read before its
        # pages of this part, so a grant a run made meanwhile stays).
        absent = [
            (email, *row)
            for email, entry in loaded.items()
            if entry[0] not in listed and (row := self._marked(entry, facts_of, target, None)) is not None
        ]
        state.update(done=True, count=len(listed), listed=[])
        await self.save(absent)
        return len(listed)

    async def finish(self, mode: str, targets: dict[str, list[int]]) -> int:
        """Step 3; the contacts read by it."""
        unplaced = {
            (kind, int(target)): {int(c): int(g) for c, g in state["unplaced"].items()}
            for kind, states in self.progress["listings"].items()
            for target, state in states.items()
        }
        loaded = await load_entries(self.engine, self.account)
        # Kept apart until written: a failure mid-read must not move where the next part reads from.
        latest_seen: str | None = self.progress["contacts"]["latest"]
        rows: list[Row] = []
        if any(unplaced.get((kind, t)) for kind, ids in targets.items() for t in ids):
            latest = datetime.fromisoformat(latest_seen) if latest_seen else None
            query = {"registeredAfter": (latest - OVERLAP).isoformat()} if latest is not None else {}
            async for contact in self.api.paginate("/api/contacts", query):
                email = contact_email(contact)
                if email is None or (email in loaded and loaded[email][0] == int(contact["id"])):
                    continue
                entry = Known.from_contact(contact, self.now, created=False)
                for kind, facts_of, _path, _key in LISTINGS:
                    facts: dict[int, Access] = getattr(entry, facts_of)
                    for target in targets[kind]:
                        facts[target] = unplaced.get((kind, target), {}).get(entry.contact_id, False)
                rows.append(
                    (email, entry.contact_id, entry.to_json(), self.now, loaded[email][3] if email in loaded else 0)
                )
                latest_seen = _later(latest_seen, registered(contact))
        rewritten = {row[0] for row in rows}
        gone = [
            (email, version)
            for email, version in self.progress["gone"].items()
            if email not in rewritten and email in loaded and loaded[email][3] == version
        ]
        started = datetime.fromisoformat(self.progress["started"])
        marks = {
            kind: {str(t): int(s["top"]) for t, s in self.progress["listings"][kind].items() if int(t) in targets[kind]}
            for kind in targets
        }
        cursor = {"registered": latest_seen, **marks}
        record = SyncRecord(self.account, mode, started, started, cursor, self.requests)
        await self.save(rows, gone=gone, done=record)
        self.progress["gone"] = dict(gone)
        return len(rows)


async def read_full(
    engine: AsyncEngine,
    api: SystemeSession,
    *,
    account: str,
    mode: str,
    targets: dict[str, list[int]],
    within: timedelta,
) -> SyncReport:
    """Read the account whole into the mirror, going on from where an unfinished read under `mode` stopped (begun
    less than `within` ago); `targets`: the course ids ("enrollments") and community ids ("memberships")."""
    now = utcnow()
    progress = await load_progress(engine, account)
    if progress is None or not _resumable(progress, mode, now, within):
        progress = _fresh(mode, now)
    report = SyncReport(account, full=True, resumed=int(progress["pages"]))
    part = _Part(engine, api, account, progress, now)
    try:
        await part.contacts({"courses": set(targets["enrollments"]), "communities": set(targets["memberships"])})
        for kind, facts_of, path, key in LISTINGS:
            counts = report.enrollments if kind == "enrollments" else report.memberships
            for target in targets[kind]:
                counts[target] = await part.listing(kind, facts_of, path, key, target)
        extra = await part.finish(mode, targets)
    except ApiError:
        await part.save([])  # what the failed part spent counts in the read's requests
        raise
    report.contacts_read = int(progress["contacts"]["read"]) + extra
    report.contacts_gone = len(progress["gone"])
    report.contacts_known = await known_count(engine, account)
    report.requests = part.requests
    return report
