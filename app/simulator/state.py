"""The simulator's account: contacts, tags, fields, courses, communities, subscriptions, webhooks, in memory.

Written from ../shared/systeme/openapi.json, not from the client: it shares no code with app/, so a client that
misreads the API fails against it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# ContactInput.locale's enum in the reference (28 codes; note `jp`, `dk`, `ua`, not ISO 639-1's ja, da, uk).
LOCALES = frozenset("en fr es it pt de nl ru jp tr ar zh sv ro cs hu sk dk id pl el sr hi no th sq sl ua".split())
DEFAULT_FIELDS = {
    "first_name": "First name",
    "surname": "Surname",
    "phone_number": "Phone number",
    "company_name": "Company name",
    "city": "City",
    "country": "Country",
}


# The real API refuses addresses whose domain has no mail server; the reserved names (RFC 2606) never have one.
RESERVED_TLDS = frozenset({"test", "invalid", "example", "localhost"})
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})


def has_no_mail_server(email: str) -> bool:
    domain = email.rsplit("@", 1)[-1].rstrip(".").lower()
    if domain.rsplit(".", 1)[-1] in RESERVED_TLDS:
        return True
    return any(domain == d or domain.endswith("." + d) for d in RESERVED_DOMAINS)


class Problem(Exception):
    """A problem document answer (API Platform style)."""

    def __init__(self, status: int, detail: str, violations: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.violations = violations or []

    def body(self) -> dict[str, Any]:
        titles = {
            400: "Bad Request",
            403: "An error occurred",
            404: "Not Found",
            415: "Unsupported Media Type",
            422: "An error occurred",
        }
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": titles.get(self.status, "Error"),
            "detail": self.detail,
        }
        if self.violations:
            body["violations"] = self.violations
        return body


def violation(path: str, message: str) -> Problem:
    return Problem(422, f"{path}: {message}", [{"propertyPath": path, "message": message, "code": "invalid"}])


def _check_locale(body: dict[str, Any]) -> None:
    if body.get("locale") is not None and body["locale"] not in LOCALES:
        raise violation("locale", "The value you selected is not a valid choice.")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Fault:
    status: int  # the answer to give; 0 answers normally, after `delay`
    count: int
    path_prefix: str = "/"
    method: str | None = None
    delay: float = 0.0
    detail: str = "fault injected"
    # Held, on top of `delay`, until a test sets it: a request kept in flight for exactly as long as a test needs.
    release: threading.Event | None = None
    skip: int = 0  # matching requests answered normally first (a read that fails at its third page)


@dataclass
class Account:
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    tags: dict[int, dict[str, Any]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    courses: dict[int, dict[str, Any]] = field(default_factory=dict)
    enrollments: dict[int, dict[str, Any]] = field(default_factory=dict)
    communities: dict[int, dict[str, Any]] = field(default_factory=dict)
    memberships: dict[int, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[int, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # by UUID, with their secrets
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rate_limit: int = 0  # requests per window; 0 means unlimited
    window_seconds: float = 60.0
    window_start: float = field(default_factory=time.monotonic)
    window_used: int = 0
    throttled: int = 0  # 429s answered
    # Strictness of the real API as the public record shows it (see app/simulator/strict.py for the controls).
    forbidden: set[str] = field(default_factory=set)  # path prefixes the key may not touch: 403
    membership_delay: float = 2.0  # seconds before a 202-accepted membership is listed
    membership_visible: dict[int, float] = field(default_factory=dict)  # membership id -> monotonic time listed
    payments: bool = True  # False: the subscriptions endpoints answer 404, as where payments are not set up
    subscriptions_limit: int = 50  # the subscriptions list refuses a larger `limit` with a 422
    pager: str = "honest"  # "ignore_cursor": lists answer the first page whatever `startingAfter` says
    # "ignored": the contacts list answers every contact whatever `email` says (the reference does not say the filter
    # is exact, so a client must not trust it to be).
    email_filter: str = "exact"
    _next_id: int = 1000

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- contacts -----------------------------------------------------------------------------------------
    def contact_by_email(self, email: str) -> dict[str, Any] | None:
        return next((c for c in self.contacts.values() if c["email"].lower() == email.lower()), None)

    def contact(self, contact_id: Any) -> dict[str, Any]:
        try:
            return self.contacts[int(contact_id)]
        except (KeyError, ValueError) as exc:
            raise Problem(404, "Not Found") from exc

    def _check_fields(self, fields: Any, *, allow_null: bool) -> list[tuple[str, str | None]]:
        if fields is None:
            return []
        if not isinstance(fields, list):
            raise violation("fields", "This value should be of type array.")
        out = []
        for index, item in enumerate(fields):
            if not isinstance(item, dict) or "slug" not in item:
                raise violation(f"fields[{index}]", "Each field needs a slug and a value.")
            slug, value = item["slug"], item.get("value")
            if slug not in self.fields:
                raise violation(f"fields[{index}].slug", f"Field '{slug}' does not exist.")
            if value is None and not allow_null:
                raise violation(f"fields[{index}].value", "This value should not be null.")
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise violation(
                    f"fields[{index}].value", "This value is too long. It should have 255 characters or less."
                )
            out.append((slug, value))
        return out

    def create_contact(self, body: dict[str, Any]) -> dict[str, Any]:
        email = body.get("email")
        if not isinstance(email, str) or not EMAIL.match(email):
            raise violation("email", "This value is not a valid email address.")
        if has_no_mail_server(email):
            raise violation("email", "The domain of this email address has no mail server.")
        if self.contact_by_email(email) is not None:
            raise violation("email", "This value is already used.")
        values = self._check_fields(body.get("fields"), allow_null=False)
        _check_locale(body)
        contact: dict[str, Any] = {
            "id": self.next_id(),
            "email": email,
            "registeredAt": _now(),
            "locale": body.get("locale") or "en",
            "sourceURL": None,
            "unsubscribed": False,
            "bounced": False,
            "needsConfirmation": False,
            "fields": [{"fieldName": self.fields[s], "slug": s, "value": v} for s, v in values],
            "tags": [],
        }
        self.contacts[contact["id"]] = contact
        return contact

    def patch_contact(self, contact_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        contact = self.contact(contact_id)
        values = self._check_fields(body.get("fields"), allow_null=True)
        _check_locale(body)
        current = {f["slug"]: f for f in contact["fields"]}
        for slug, value in values:  # merge-patch: null clears the field
            if value is None:
                current.pop(slug, None)
            else:
                current[slug] = {"fieldName": self.fields[slug], "slug": slug, "value": value}
        contact["fields"] = list(current.values())
        if "locale" in body and body["locale"]:
            contact["locale"] = body["locale"]
        return contact

    # --- tags ---------------------------------------------------------------------------------------------
    def create_tag(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise violation("name", "This value should not be blank.")
        if len(name) > 64:
            raise violation("name", "This value is too long. It should have 64 characters or less.")
        if any(t["name"] == name for t in self.tags.values()):
            raise violation("name", "This value is already used.")
        tag: dict[str, Any] = {"id": self.next_id(), "name": name, "createdAt": _now()}
        self.tags[tag["id"]] = tag
        return tag

    def rename_tag(self, tag_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        tag = self.tags.get(int(tag_id)) if str(tag_id).isdigit() else None
        if tag is None:
            raise Problem(404, "Not Found")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise violation("name", "This value should not be blank.")
        if any(t["name"] == name and t["id"] != tag["id"] for t in self.tags.values()):
            raise violation("name", "This value is already used.")
        tag["name"] = name
        for contact in self.contacts.values():
            for item in contact["tags"]:
                if item["id"] == tag["id"]:
                    item["name"] = name
        return tag

    def delete_tag(self, tag_id: Any) -> None:
        if not str(tag_id).isdigit() or self.tags.pop(int(tag_id), None) is None:
            raise Problem(404, "Not Found")
        for contact in self.contacts.values():
            contact["tags"] = [t for t in contact["tags"] if t["id"] != int(tag_id)]

    def delete_contact(self, contact_id: Any) -> None:
        contact = self.contact(contact_id)
        del self.contacts[contact["id"]]
        self.enrollments = {k: e for k, e in self.enrollments.items() if e["contact"]["id"] != contact["id"]}
        self.memberships = {k: m for k, m in self.memberships.items() if m["contact"]["id"] != contact["id"]}

    def add_contact_tag(self, contact_id: Any, body: dict[str, Any]) -> None:
        contact = self.contact(contact_id)
        tag_id = body.get("tagId")
        if not isinstance(tag_id, int) or tag_id not in self.tags:
            raise violation("tagId", "Tag not found.")
        if any(t["id"] == tag_id for t in contact["tags"]):
            raise violation("tagId", "Contact already has this tag.")
        contact["tags"].append({"id": tag_id, "name": self.tags[tag_id]["name"]})

    def remove_contact_tag(self, contact_id: Any, tag_id: Any) -> None:
        contact = self.contact(contact_id)
        before = len(contact["tags"])
        contact["tags"] = [t for t in contact["tags"] if str(t["id"]) != str(tag_id)]
        if len(contact["tags"]) == before:
            raise Problem(404, "Not Found")

    # --- school and community -----------------------------------------------------------------------------
    def enroll(self, course_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            course = self.courses[int(course_id)]
        except (KeyError, ValueError) as exc:
            raise Problem(404, "Course not found") from exc
        contact_id = body.get("contactId")
        if not isinstance(contact_id, int):
            raise violation("contactId", "This value should not be null.")
        contact = self.contact(contact_id)
        access = body.get("accessType")
        kinds = ("full_access", "partial_access", "dripping_content", "partial_dripping_access")
        if access not in kinds:
            raise violation("accessType", "The value you selected is not a valid choice.")
        if access.startswith("partial") and not body.get("modules"):
            raise violation("modules", "Modules must be provided for partial access.")
        enrollment: dict[str, Any] = {
            "id": self.next_id(),
            "contact": {"id": contact["id"], "email": contact["email"]},
            "course": {"id": course["id"], "name": course["name"]},
            "accessType": access,
            "active": True,
        }
        self.enrollments[enrollment["id"]] = enrollment
        return enrollment

    def join(self, community_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            community = self.communities[int(community_id)]
        except (KeyError, ValueError) as exc:
            raise Problem(404, "Community not found") from exc
        if not isinstance(body.get("contactId"), int):
            raise violation("contactId", "This value should be of type int.")
        contact = self.contact(body["contactId"])
        membership: dict[str, Any] = {"id": self.next_id(), "community": community, "contact": {"id": contact["id"]}}
        self.memberships[membership["id"]] = membership
        # Accepted, not done: the membership is created by a queue and listed only a moment later.
        self.membership_visible[membership["id"]] = time.monotonic() + self.membership_delay
        return membership

    def listed_memberships(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [m for k, m in self.memberships.items() if self.membership_visible.get(k, 0.0) <= now]

    def cancel(self, subscription_id: Any, body: dict[str, Any]) -> None:
        try:
            subscription = self.subscriptions[int(subscription_id)]
        except (KeyError, ValueError) as exc:
            raise Problem(404, "Subscription not found") from exc
        if body.get("cancel") not in ("Now", "WhenBillingPeriodEnds"):
            raise violation("cancel", "The value you selected is not a valid choice.")
        if subscription["status"] == "cancelled" or subscription.get("cancelRequested"):
            raise Problem(422, "Subscription is already cancelled.")
        subscription["cancelRequested"] = body["cancel"]
        # Both kinds set cancelledAt; a cancel at the end of the period leaves the subscription active until then.
        subscription["cancelledAt"] = _now()
        if body["cancel"] == "Now":
            subscription["status"] = "cancelled"

    # --- limits and faults --------------------------------------------------------------------------------
    def take_quota(self) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the window refills) under the fixed-window quota."""
        now = time.monotonic()
        if now - self.window_start >= self.window_seconds:
            self.window_start, self.window_used = now, 0
        refill = self.window_seconds - (now - self.window_start)
        if self.rate_limit and self.window_used >= self.rate_limit:
            self.throttled += 1
            return False, 0, refill
        self.window_used += 1
        return True, max(0, self.rate_limit - self.window_used), refill

    def refuses(self, path: str) -> bool:
        """Whether the key may not touch this path (a record or feature configured through /_sim/forbid)."""
        return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in self.forbidden)

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and path.startswith(fault.path_prefix) and fault.method in (None, method):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.count -= 1
                return fault
        return None
