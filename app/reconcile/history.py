"""What we did to each contact, read from the actions table, and its net effect per tag, course and community.

Only succeeded actions count, in `order_key` order (the order their events occurred): the last one on a target
decides whether the contact should have it now, so a refund after a purchase means "should not", and a purchase
after a refund "should" again. A target with an action not run yet (pending, running, awaiting approval,
scheduled) is in flight: the account may differ from it for good reason, so it is not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes
from app.store.actions import TERMINAL
from app.store.models import actions, events
from app.store.modes import runnable
from app.store.statuses import ActionStatus

# kind -> (what it is about, whether the contact has it afterwards)
KINDS: dict[str, tuple[str, bool]] = {
    "tag": ("tag", True),
    "untag": ("tag", False),
    "enroll": ("course", True),
    "unenroll": ("course", False),
    "add_to_community": ("community", True),
    "remove_from_community": ("community", False),
}
# Actions that end every effect before them: the contact is erased, so nothing granted earlier should hold.
ERASING = frozenset({"delete_contact"})
# Ended for good: nothing more will happen to the target because of them ("cancelled": a step over time whose
# rule called it off).
_SETTLED = TERMINAL | {ActionStatus.CANCELLED}
_BATCH = 500


@dataclass(frozen=True)
class Done:
    """One stored action on a contact."""

    id: str
    event_id: str
    event_type: str | None
    rule_id: str
    seq: int
    kind: str
    params: dict[str, Any]
    approval: str
    status: str
    order_key: str
    at: datetime

    @property
    def about(self) -> str:
        return KINDS[self.kind][0]

    @property
    def grants(self) -> bool:
        return KINDS[self.kind][1]

    def reference(self) -> Any:
        """The tag, course or community as the rule named it: a name or an id."""
        if self.about == "tag":
            return self.params.get("id") if self.params.get("id") is not None else self.params.get("name")
        return self.params.get(self.about)


# A target within one contact: ("tag", "name:Buyer" or "id:12") or ("course"/"community", "<id>").
TargetKey = tuple[str, str]


@dataclass
class Expectation:
    key: TargetKey
    present: bool
    last: Done  # the action whose effect should hold now


@dataclass
class ContactHistory:
    account: str
    email: str
    expectations: list[Expectation] = field(default_factory=list)
    in_flight: list[TargetKey] = field(default_factory=list)


@dataclass
class Selection:
    """The contacts our succeeded actions touched in the window, with the actions that touched them."""

    touched: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (account, email) -> action ids

    def by_account(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for account, email in sorted(self.touched):
            grouped.setdefault(account, []).append(email)
        return grouped


async def select_contacts(
    engine: AsyncEngine, *, since: datetime, rule: str | None = None, modes: Modes | None = None
) -> Selection:
    """The (account, email) pairs with a tag, course or community action that succeeded since `since`; with
    `modes`, only actions of each account's current mode (what the simulator did is not drift in a live account)."""
    query = sa.select(actions.c.account, actions.c.contact_email, actions.c.id).where(
        runnable(modes),
        actions.c.status == ActionStatus.SUCCEEDED,
        actions.c.updated_at >= since,
        actions.c.kind.in_(KINDS),
        actions.c.contact_email.is_not(None),
    )
    if rule is not None:
        query = query.where(actions.c.rule_id == rule)
    selection = Selection()
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            selection.touched.setdefault((row.account, row.contact_email), set()).add(row.id)
    return selection


async def load_actions(
    engine: AsyncEngine, account: str, emails: Sequence[str], *, modes: Modes | None = None
) -> dict[str, list[Done]]:
    """Every tag, course and community action of these contacts, and their erasures, whatever its time or status,
    in order."""
    found: dict[str, list[Done]] = {email: [] for email in emails}
    async with engine.connect() as conn:
        for start in range(0, len(emails), _BATCH):
            rows = await conn.execute(
                sa.select(actions, events.c.type.label("event_type"))
                .join(events, events.c.id == actions.c.event_id)
                .where(
                    runnable(modes),
                    actions.c.account == account,
                    actions.c.contact_email.in_(emails[start : start + _BATCH]),
                    actions.c.kind.in_([*KINDS, *ERASING]),
                )
                .order_by(actions.c.order_key, actions.c.id)
            )
            for r in rows:
                found[r.contact_email].append(
                    Done(
                        id=r.id,
                        event_id=r.event_id,
                        event_type=r.event_type,
                        rule_id=r.rule_id,
                        seq=r.seq,
                        kind=r.kind,
                        params=dict(r.params),
                        approval=r.approval,
                        status=r.status,
                        order_key=r.order_key,
                        at=r.updated_at,
                    )
                )
    return found


def references(done: Iterable[Done], about: str) -> set[str]:
    """The names (not ids) by which these actions name courses or communities: to look up once per account."""
    return {
        str(d.reference()).strip() for d in done if d.kind in KINDS and d.about == about and not _is_id(d.reference())
    }


def _is_id(value: Any) -> bool:
    text = str(value).strip()
    return (isinstance(value, int) and not isinstance(value, bool)) or (text.isdigit() and len(text) < 19)


def target_key(done: Done, ids: Callable[[str, str], int | None]) -> TargetKey | None:
    """One key per tag, course or community, whichever way the rule named it; None when a name is unknown."""
    reference = done.reference()
    if reference is None:
        return None
    if done.about == "tag":
        return ("tag", f"id:{int(reference)}" if _is_id(reference) else f"name:{str(reference).strip()}")
    if _is_id(reference):
        return (done.about, str(int(reference)))
    found = ids(done.about, str(reference).strip())
    return (done.about, str(found)) if found is not None else None


def net_effect(
    account: str,
    email: str,
    done: Sequence[Done],
    touched: set[str],
    ids: Callable[[str, str], int | None],
) -> ContactHistory:
    """What should hold now for each target the `touched` actions changed: the effect of the last one that
    succeeded on it, whichever rule it came from."""
    last: dict[TargetKey, Done] = {}
    moving: set[TargetKey] = set()
    wanted: list[TargetKey] = []
    for action in done:
        if action.kind in ERASING:
            if action.status == ActionStatus.SUCCEEDED:
                # We erased the contact ourselves: what it had before is gone on purpose, not drift.
                last.clear()
            continue
        key = target_key(action, ids)
        if key is None:
            continue
        if action.status == ActionStatus.SUCCEEDED:
            last[key] = action
        elif action.status not in _SETTLED:
            moving.add(key)
        if action.id in touched and key not in wanted:
            wanted.append(key)
    history = ContactHistory(account, email)
    for key in wanted:
        if key in moving:
            history.in_flight.append(key)
        elif key in last:
            history.expectations.append(Expectation(key, last[key].grants, last[key]))
    return history
