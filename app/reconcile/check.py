"""One contact as Systeme.io has it now (GET only), compared with what we did.

At most three requests per contact: the contact by email (its tags come with it), then all its enrollments and
all its memberships, each only when we did something with a course or a community, and each filtered by the
contact on the API's side and again on ours (a filter the API ignored must not credit someone else's access).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from app.actions.contacts import find_contact
from app.actions.mirror import Known, contact_tags
from app.reconcile.history import ContactHistory, Done, Expectation
from app.store.models import utcnow
from app.systeme.client import SystemeSession
from app.systeme.errors import PermanentApiError

# A join's membership is listed a moment after its 202 (the runner waits as long: RetryPolicy.listing_wait).
MEMBERSHIP_LISTED_WITHIN = timedelta(seconds=60)


class GetOnly(SystemeSession):
    """A session that refuses to send anything but GET: a drift check must never change the account."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        allow: Collection[int] = (),
    ) -> httpx.Response:
        if method != "GET":
            raise PermanentApiError(f"a drift check only reads: {method} {path} refused")
        return await super().request(method, path, params=params, allow=allow)


@dataclass
class Seen:
    """The contact's state in Systeme.io; `contact_id` None: no contact with this email."""

    contact_id: int | None
    tags: dict[int, str] = field(default_factory=dict)
    courses: dict[int, list[int]] = field(default_factory=dict)  # course id -> enrollment ids
    communities: dict[int, list[int]] = field(default_factory=dict)  # community id -> membership ids


@dataclass(frozen=True)
class Drift:
    """One target where the account no longer matches the net effect of what we did."""

    account: str
    email: str
    kind: str  # "removed" (we granted it, it is gone), "still_there" (we took it away) or "contact_deleted"
    about: str  # tag, course or community
    target: str  # the tag's name (or id), the course's or community's id
    found: list[int]  # the ids Systeme.io shows now (a tag id, enrollment or membership ids)
    last: Done  # the action that should hold; --fix plans it again

    @property
    def why(self) -> str:
        if self.kind == "contact_deleted":
            return "contact deleted"
        if self.kind == "removed":
            return {"tag": "tag removed by hand", "course": "enrollment deleted", "community": "membership removed"}[
                self.about
            ]
        what = "tag" if self.about == "tag" else "access"
        said = f"{self.last.event_type or ''} {self.last.rule_id}".lower()
        return f"{what} still there after " + ("a refund" if "refund" in said else f"{self.last.rule_id} removed it")

    def we_did(self) -> str:
        return f"{describe(self.last)} ({self.last.rule_id}, {self.last.at:%Y-%m-%d %H:%M})"

    def systeme_says(self) -> str:
        if self.kind == "contact_deleted":
            return "no contact with this email"
        ids = ", ".join(str(i) for i in self.found)
        many = "s" if len(self.found) > 1 else ""
        present = {
            "tag": f"tagged (tag {ids})",
            "course": f"enrolled (enrollment{many} {ids})",
            "community": f"a member (membership{many} {ids})",
        }
        absent = {"tag": "not tagged", "course": "not enrolled", "community": "not a member"}
        return present[self.about] if self.found else absent[self.about]

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "contact": self.email,
            "kind": self.kind,
            "why": self.why,
            "target": {"type": self.about, "ref": self.target},
            "we_did": {
                "action_id": self.last.id,
                "kind": self.last.kind,
                "params": self.last.params,
                "rule_id": self.last.rule_id,
                "event_id": self.last.event_id,
                "at": self.last.at.isoformat(),
                "text": describe(self.last),
            },
            "systeme_io": {"found": self.found, "text": self.systeme_says()},
        }


def describe(done: Done) -> str:
    reference = done.reference()
    name = f"'{reference}'" if isinstance(reference, str) and not reference.isdigit() else str(reference)
    return {
        "tag": f"tagged {name}",
        "untag": f"untagged {name}",
        "enroll": f"enrolled in course {name}",
        "unenroll": f"unenrolled from course {name}",
        "add_to_community": f"added to community {name}",
        "remove_from_community": f"removed from community {name}",
    }[done.kind]


async def _grouped(api: SystemeSession, path: str, contact_id: int, key: str) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    async for item in api.paginate(path, {"contact": contact_id}):
        owner = (item.get("contact") or {}).get("id")
        target = (item.get(key) or {}).get("id")
        if owner in (contact_id, None) and target is not None and str(item.get("id", "")).isdigit():
            found.setdefault(int(target), []).append(int(item["id"]))
    return found


async def read_contact(api: SystemeSession, email: str, *, courses: bool, communities: bool) -> Seen:
    """GET only: the contact, and its enrollments and memberships when asked."""
    contact = await find_contact(api, email)
    if contact is None:
        return Seen(None)
    cid = int(contact["id"])
    seen = Seen(cid, tags=contact_tags(contact))
    if courses:
        seen.courses = await _grouped(api, "/api/school/enrollments", cid, "course")
    if communities:
        seen.communities = await _grouped(api, "/api/community/memberships", cid, "community")
    return seen


def _tag_ids(expectation: Expectation, seen: Seen, mirror: Known | None) -> list[int]:
    """The contact's tags that are this one: by the id we recorded when we added it, else by name (or id)."""
    kind, ref = expectation.key[1].split(":", 1)
    if kind == "id":
        return [int(ref)] if int(ref) in seen.tags else []
    found = [tid for tid, name in seen.tags.items() if name == ref]
    # The mirror's grants belong to the contact they were made on; a contact created again has none of them.
    if mirror is not None and mirror.contact_id == seen.contact_id:
        granted = mirror.grants.get(f"tag:{ref}")
        if granted is not None and granted in seen.tags and granted not in found:
            found.append(granted)
    return found


def compare(history: ContactHistory, seen: Seen, mirror: Known | None, *, now: datetime | None = None) -> list[Drift]:
    """The targets where Systeme.io differs from the net effect of what we did. A membership we asked for moments
    ago is not one of them: Systeme.io creates it asynchronously and lists it only a little later (it is counted
    in flight instead)."""
    now = now or utcnow()
    drifts = []
    for expectation in history.expectations:
        about, target = expectation.key
        if seen.contact_id is None:
            if expectation.present:
                drifts.append(_drift(history, expectation, "contact_deleted", []))
            continue
        if about == "tag":
            found = _tag_ids(expectation, seen, mirror)
        else:
            found = (seen.courses if about == "course" else seen.communities).get(int(target), [])
        if expectation.present and not found:
            if about == "community" and now - expectation.last.at < MEMBERSHIP_LISTED_WITHIN:
                history.in_flight.append(expectation.key)
                continue
            drifts.append(_drift(history, expectation, "removed", []))
        elif not expectation.present and found:
            drifts.append(_drift(history, expectation, "still_there", found))
    return drifts


def _drift(history: ContactHistory, expectation: Expectation, kind: str, found: list[int]) -> Drift:
    about, target = expectation.key
    if about == "tag":
        target = target.split(":", 1)[1]
    return Drift(history.account, history.email, kind, about, target, found, expectation.last)
