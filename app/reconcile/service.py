"""Drift check: for the contacts our succeeded actions touched, read Systeme.io and list where it no longer matches.

Reads only, through the client (and so the quota) the caller hands in for each account: with Redis, the budget the
workers share, so a reconcile never pushes the account over its quota while they run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.holds import key_to_fix
from app.accounts.modes import Modes
from app.actions.mirror import Known
from app.actions.resolve import community_id, course_id
from app.errors import AppError
from app.reconcile.check import Drift, GetOnly, compare, read_contact
from app.reconcile.history import ContactHistory, Selection, load_actions, net_effect, references, select_contacts
from app.store.contacts import load_contact
from app.store.statuses import Priority
from app.systeme.client import SystemeClient, SystemeSession
from app.systeme.errors import AccountUnusable, ApiError, TransientApiError

T = TypeVar("T")

# Gives the client of an account name, or raises an AppError saying why that account cannot be read.
ClientFor = Callable[[str], SystemeClient]
# (account, contacts done, contacts in the account)
Progress = Callable[[str, int, int], None]

CONCURRENCY = 4  # few: the quota, not this, sets the pace, and workers must keep their share of it
# Waits before each new try of a read that failed transiently (a 5xx, the network, the quota said "not now").
RETRY_DELAYS = (1.0, 3.0, 10.0, 30.0)
MAX_RETRY_WAIT = 60.0


@dataclass
class AccountReport:
    contacts: int
    checked: int = 0
    requests: int = 0  # every request this reconcile made to the account, lookups included
    error: str | None = None


@dataclass
class Report:
    since: datetime
    rule: str | None
    accounts: dict[str, AccountReport] = field(default_factory=dict)
    drifts: list[Drift] = field(default_factory=list)
    in_flight: int = 0  # targets not judged: an action on them has not run yet
    unchecked: list[dict[str, str]] = field(default_factory=list)  # contacts whose reads failed
    errors: list[str] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(a.checked for a in self.accounts.values())

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.accounts.values())

    @property
    def complete(self) -> bool:
        return not (self.errors or self.unchecked)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "rule": self.rule,
            "contacts": sum(a.contacts for a in self.accounts.values()),
            "checked": self.checked,
            "requests": self.requests,
            "requests_per_contact": round(self.requests / self.checked, 2) if self.checked else 0,
            "accounts": {name: vars(a) for name, a in self.accounts.items()},
            "drifts": [d.to_json() for d in self.drifts],
            "counts": dict(Counter(d.kind for d in self.drifts)),
            "in_flight": self.in_flight,
            "unchecked": self.unchecked,
            "errors": self.errors,
        }


async def reconcile(
    engine: AsyncEngine,
    *,
    client_for: ClientFor,
    since: datetime,
    rule: str | None = None,
    progress: Progress | None = None,
    concurrency: int = CONCURRENCY,
    modes: Modes | None = None,
) -> Report:
    """Check every contact our tag, course and community actions touched since `since` (of one rule); with `modes`,
    only what each account's current mode did."""
    selection = await select_contacts(engine, since=since, rule=rule, modes=modes)
    report = Report(since, rule)
    for account, emails in selection.by_account().items():
        report.accounts[account] = AccountReport(len(emails))
        try:
            client = client_for(account)
        except AppError as exc:
            report.accounts[account].error = exc.message
            report.errors.append(f"{_contacts(len(emails))} not checked: {exc.message}")
            continue
        await _Account(engine, client, account, report, progress, modes).check(emails, selection, concurrency)
    report.drifts.sort(key=lambda d: (d.account, d.email, d.last.order_key, d.about, d.target))
    return report


async def _patiently(read: Callable[[], Awaitable[T]]) -> T:
    """A read, tried again after transient failures; the last one is raised."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return await read()
        except TransientApiError as exc:
            if delay is None:
                raise
            await asyncio.sleep(min(exc.retry_after, MAX_RETRY_WAIT) if exc.retry_after is not None else delay)
    raise AssertionError("unreachable")


def _reason(exc: Exception) -> str:
    """Why a read failed: the API's answer, or (an answer we could not read) the error itself."""
    return exc.message if isinstance(exc, ApiError) else f"unexpected answer: {exc!r}"[:300]


class _Account:
    def __init__(
        self,
        engine: AsyncEngine,
        client: SystemeClient,
        account: str,
        report: Report,
        progress: Progress | None,
        modes: Modes | None = None,
    ) -> None:
        self.engine, self.client, self.account, self.modes = engine, client, account, modes
        self.report, self.progress = report, progress
        self.stats = report.accounts[account]
        self.ids: dict[tuple[str, str], int | None] = {}
        self.done = 0
        # An answer that would be the same for every contact (a wrong API key, a quota used up for long): the
        # remaining contacts are not read.
        self.stopped: str | None = None

    def session(self) -> SystemeSession:
        # The service's own traffic: a reconcile during a launch leaves the last of the quota to buyers.
        return GetOnly(self.client, priority=Priority.LOW)

    async def check(self, emails: list[str], selection: Selection, concurrency: int) -> None:
        history = await load_actions(self.engine, self.account, emails, modes=self.modes)
        await self._lookup_names([d for done in history.values() for d in done])
        gate = asyncio.Semaphore(concurrency)

        async def one(email: str) -> None:
            async with gate:
                touched = selection.touched[(self.account, email)]
                await self._contact(net_effect(self.account, email, history[email], touched, self._id))
                self.done += 1
                if self.progress is not None:
                    self.progress(self.account, self.done, len(emails))

        await asyncio.gather(*(one(email) for email in emails))
        if self.stopped is not None:
            self.stats.error = self.stopped
            self.report.errors.append(f"account {self.account!r}: stopped: {self.stopped}")

    def _id(self, about: str, name: str) -> int | None:
        return self.ids.get((about, name))

    async def _lookup_names(self, done: Collection[Any]) -> None:
        """Courses and communities named by name: one lookup each per reconcile (the shared name cache helps)."""
        api = self.session()
        for about, resolve in (("course", course_id), ("community", community_id)):
            for name in sorted(references(done, about)):
                try:
                    self.ids[(about, name)] = await _patiently(partial(resolve, api, name))
                except Exception as exc:
                    self.ids[(about, name)] = None
                    self.report.errors.append(f"account {self.account!r}: {about} {name!r} not checked: {_reason(exc)}")
        self.stats.requests += len(api.calls)

    async def _contact(self, history: ContactHistory) -> None:
        self.report.in_flight += len(history.in_flight)
        if not history.expectations or self.stopped is not None:
            return
        abouts = {e.key[0] for e in history.expectations}
        api = self.session()
        try:
            seen = await _patiently(
                lambda: read_contact(api, history.email, courses="course" in abouts, communities="community" in abouts)
            )
        except Exception as exc:
            # The account refused us (its key or connection), or its quota is used up: stop reading it.
            if isinstance(exc, AccountUnusable):
                key = key_to_fix(self.account, maton=self.client.maton)
                self.stopped = f"{exc.message} (the account refused the key: check {key})"
            elif isinstance(exc, TransientApiError) and exc.throttled:
                self.stopped = exc.message
            else:
                self.report.unchecked.append({"account": self.account, "contact": history.email, "error": _reason(exc)})
            return
        finally:
            self.stats.requests += len(api.calls)
        entry = await load_contact(self.engine, self.account, history.email)
        mirror = Known.from_json(*entry) if entry is not None else None
        waiting = len(history.in_flight)
        self.report.drifts += compare(history, seen, mirror)
        self.report.in_flight += len(history.in_flight) - waiting
        self.stats.checked += 1


def render_text(report: Report) -> list[str]:
    """One line per drift (a deleted contact's on one line), then a summary."""
    deleted: dict[tuple[str, str], list[Drift]] = {}
    for drift in report.drifts:
        if drift.kind == "contact_deleted":
            deleted.setdefault((drift.account, drift.email), []).append(drift)
    lines = []
    for drift in report.drifts:
        where = f"[{drift.account}] " if drift.account != "default" else ""
        if drift.kind != "contact_deleted":
            lines.append(
                f"{where}{drift.email}  we {drift.we_did()}  Systeme.io: {drift.systeme_says()}  [{drift.why}]"
            )
        elif deleted[(drift.account, drift.email)][0] is drift:
            did = "; ".join(d.we_did() for d in deleted[(drift.account, drift.email)])
            lines.append(f"{where}{drift.email}  we {did}  Systeme.io: no contact with this email  [contact deleted]")
    lines.append(summary(report, len(deleted)))
    return lines


def _contacts(count: int) -> str:
    return f"{count} contact" + ("" if count == 1 else "s")


def summary(report: Report, deleted: int) -> str:
    per = f", {report.requests / report.checked:.1f} per contact" if report.checked else ""
    head = f"{_contacts(report.checked)} checked with {report.requests} requests (GET only{per})"
    whys = Counter(d.why for d in report.drifts if d.kind != "contact_deleted")
    if deleted:
        whys["contact deleted"] = deleted
    found = ", ".join(f"{n} {why}" for why, n in sorted(whys.items(), key=lambda w: (-w[1], w[0])))
    count = sum(whys.values())
    # "no drift" only when every contact could be read: a refused key must not read as all in order.
    clean = "no drift" if report.complete else "nothing out of place in what could be read, but the check is incomplete"
    text = f"{head}: " + (f"{count} drift{'' if count == 1 else 's'} ({found})" if whys else clean)
    if report.in_flight:
        text += f"; {report.in_flight} not judged, an action on them has not run yet"
    if report.unchecked:
        text += f"; {_contacts(len(report.unchecked))} could not be read"
    return text
