"""The chaos run's verdict: the service's database and the simulators' accounts against what the acknowledged
events mean. Every violation is a line of text; none is the only passing result."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from bench.chaos_stream import Delivery

SETTLED = ("succeeded", "failed", "dead", "skipped", "rejected", "cancelled")
PROBLEMS = ("failed", "dead", "rejected")


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _rows(database_url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def settle(database_url: str, acked: int, *, timeout: float = 900.0) -> float:
    """Wait until at least `acked` events are stored and judged and no action is pending, running or scheduled;
    returns when that was (monotonic). Raises when it does not happen within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            (row,) = await _rows(
                database_url,
                "SELECT (SELECT count(*) FROM events WHERE planned_at IS NOT NULL) AS judged,"
                " (SELECT count(*) FROM events WHERE planned_at IS NULL) AS unjudged,"
                f" (SELECT count(*) FROM actions WHERE status NOT IN {SETTLED!r}) AS open",
            )
            if row["judged"] >= acked and row["unjudged"] == 0 and row["open"] == 0:
                return time.monotonic()
        except (OSError, asyncpg.PostgresError):
            pass  # the database restarting: ask again
        if time.monotonic() > deadline:
            raise TimeoutError("the actions did not settle in time")
        await asyncio.sleep(0.5)


@dataclass
class Verdict:
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    calls: int = 0
    throttled: int = 0
    out_of_order: int = 0
    early: int = 0  # violations of buyers whose refund arrived before their purchase

    def fail(self, text: str) -> None:
        self.violations.append(text)


Person = tuple[str, str]  # (account, email)


def _expected(acked: dict[tuple[str, str], Delivery]) -> tuple[dict[Person, bool], set[Person], set[Person]]:
    """Per (account, email): granted or not, by the buyer's last event in event time; who posted a form; and
    whose refund was delivered before its purchase (the ordering case, named as such in a violation)."""
    last: dict[Person, Delivery] = {}
    sent_first: dict[Person, str] = {}
    forms: set[Person] = set()
    for d in sorted(acked.values(), key=lambda d: d.send_at):
        if d.kind == "form":
            forms.add((d.account, d.email))
            continue
        key = (d.account, d.email)
        sent_first.setdefault(key, d.kind)
        if key not in last or d.occurred > last[key].occurred:
            last[key] = d
    early = {k for k, kind in sent_first.items() if kind == "refund"}
    return {k: d.kind == "purchase" for k, d in last.items()}, forms, early


async def check(database_url: str, sims: dict[str, str], acked: dict[tuple[str, str], Delivery]) -> Verdict:
    verdict = Verdict()
    events = await _rows(database_url, "SELECT id, source, provider_id, planned_at FROM events")
    stored = {(r["source"], r["provider_id"]): r for r in events}
    for key in acked:
        verdict.checked += 1
        if key not in stored:
            verdict.fail(f"acknowledged but not stored: {key[0]} {key[1]}")
        elif stored[key]["planned_at"] is None:
            verdict.fail(f"acknowledged but never judged: {key[0]} {key[1]}")
    for row in await _rows(
        database_url, "SELECT a.status, a.kind, a.contact_email, a.last_error, a.outcome, a.note, e.provider_id"
        " FROM actions a JOIN events e ON e.id = a.event_id ORDER BY a.created_at",
    ):  # fmt: skip
        verdict.checked += 1
        if row["status"] not in SETTLED:
            verdict.fail(
                f"action left {row['status']}: {row['kind']} for {row['contact_email']} ({row['provider_id']})"
            )
        elif row["status"] in PROBLEMS:
            why = row["last_error"] or row["outcome"] or ""
            verdict.fail(
                f"action {row['status']}: {row['kind']} for {row['contact_email']} ({row['provider_id']}): {why}"
            )
        if row["note"] and "out of order" in row["note"]:
            verdict.out_of_order += 1
    granted, forms, early = _expected(acked)
    async with httpx.AsyncClient(timeout=30) as http:
        states = {name: (await http.get(f"{url}/_sim/state")).json() for name, url in sims.items()}
    for account, state in states.items():
        _check_account(verdict, account, state, granted, forms, early)
    return verdict


@dataclass
class Effects:
    """What one simulator account holds and was asked: contacts by email, grants and tag requests by contact id."""

    by_email: dict[str, list[dict[str, Any]]]
    enrolled: Counter[int]
    members: Counter[int]
    tag_adds: Counter[str]
    tag_removes: Counter[str]
    created: int


def _effects(state: dict[str, Any]) -> Effects:
    by_email: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for contact in state["contacts"]:
        by_email[contact["email"].lower()].append(contact)
    ok = {200, 201, 202, 204}
    tag_adds: Counter[str] = Counter()
    tag_removes: Counter[str] = Counter()
    created = 0
    for c in state["calls"]:
        parts = c["path"].split("/")  # /api/contacts, /api/contacts/{id}/tags[/{tag}]
        if c.get("status") not in ok:
            continue
        if c["method"] == "POST" and c["path"] == "/api/contacts":
            created += 1
        elif len(parts) >= 5 and parts[2] == "contacts" and parts[4] == "tags":
            (tag_adds if c["method"] == "POST" else tag_removes)[parts[3]] += 1
    return Effects(
        by_email,
        Counter(e["contact"]["id"] for e in state["enrollments"] if e["course"]["id"] == 101),
        Counter(m["contact"]["id"] for m in state["memberships"] if m["community"]["id"] == 7),
        tag_adds,
        tag_removes,
        created,
    )


def _check_buyer(verdict: Verdict, account: str, email: str, should: bool, fx: Effects, posted: bool) -> None:
    found = fx.by_email.get(email, [])
    verdict.checked += 4
    if not found and not should:
        # Revoked in the end and never granted (its refund came first): no step that takes away creates a contact.
        return
    if len(found) != 1:
        verdict.fail(f"{account}: {email} is {len(found)} contacts")
        return
    contact = found[0]
    cid = contact["id"]
    has = {
        "tag": any(t["name"] == "Course buyer" for t in contact["tags"]),
        "enrollment": fx.enrolled[cid] > 0,
        "community": fx.members[cid] > 0,
    }
    wrong = [name for name, value in has.items() if value != should]
    if wrong:
        verdict.fail(f"{account}: {email} should be {'granted' if should else 'revoked'}: {', '.join(wrong)} not")
    if fx.enrolled[cid] > 1 or fx.members[cid] > 1:
        verdict.fail(
            f"{account}: {email} granted twice ({fx.enrolled[cid]} enrollments, {fx.members[cid]} memberships)"
        )
    tags_wanted = 1 + posted
    if fx.tag_adds[str(cid)] > tags_wanted:
        verdict.fail(f"{account}: {email} tagged {fx.tag_adds[str(cid)]} times for {tags_wanted} tags")
    if fx.tag_removes[str(cid)] > 1:
        verdict.fail(f"{account}: {email} untagged {fx.tag_removes[str(cid)]} times")


def _check_account(
    verdict: Verdict,
    account: str,
    state: dict[str, Any],
    granted: dict[Person, bool],
    forms: set[Person],
    early: set[Person],
) -> None:
    """One simulator account: each buyer's final access, each form's tag, and no effect applied twice."""
    verdict.calls += sum(1 for c in state["calls"] if c.get("status") != 429)
    verdict.throttled += state["throttled"]
    fx = _effects(state)
    # Who must have a contact (granted in the end, or posted a form), and who may (a buyer revoked in the end may
    # never have been created: a refund delivered first creates nothing, and its purchase is then overturned).
    wanted = {e for (a, e), should in granted.items() if a == account and should} | {
        e for (a, e) in forms if a == account
    }
    allowed = wanted | {e for (a, e) in granted if a == account}
    verdict.checked += 1
    if fx.created != len(state["contacts"]) or not wanted <= set(fx.by_email) <= allowed:
        verdict.fail(
            f"{account}: {fx.created} contacts created for {len(wanted)} people "
            f"({len(set(fx.by_email) - allowed)} unexpected, {len(wanted - set(fx.by_email))} missing)"
        )
    for (acc, email), should in sorted(granted.items()):
        if acc == account:
            known = len(verdict.violations)
            _check_buyer(verdict, account, email, should, fx, (account, email) in forms)
            if (account, email) in early and len(verdict.violations) > known:
                verdict.early += len(verdict.violations) - known
                tail = " (its refund was delivered before its purchase: ordering)"
                verdict.violations[known:] = [v + tail for v in verdict.violations[known:]]
    for acc, email in sorted(forms):
        if acc == account:
            verdict.checked += 1
            if not any(t["name"] == "Newsletter" for c in fx.by_email.get(email, []) for t in c["tags"]):
                verdict.fail(f"{account}: {email} posted the form but is not tagged Newsletter")
