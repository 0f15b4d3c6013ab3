"""What a sync read and spent, as `systeme-flow sync` prints it (and `--json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# registeredAt has whole seconds: read again the last second seen, so a contact registered in it is not missed.
OVERLAP = timedelta(seconds=1)


@dataclass
class SyncReport:
    account: str
    full: bool
    contacts_read: int = 0
    contacts_gone: int = 0
    contacts_known: int = 0
    enrollments: dict[int, int] = field(default_factory=dict)  # course id -> enrollments read
    memberships: dict[int, int] = field(default_factory=dict)  # community id -> memberships read
    requests: int = 0
    seconds: float = 0.0
    templated: list[str] = field(default_factory=list)
    resumed: int = 0  # pages an earlier, interrupted part of this full read had read already

    def lines(self) -> list[str]:
        kind = "full read" if self.full else "incremental read (what is new since the last sync)"
        out = [
            f"account {self.account}: {kind}",
            f"  contacts read: {self.contacts_read}" + (f", {self.contacts_gone} gone" if self.contacts_gone else ""),
        ]
        if self.resumed:
            out.insert(1, f"  resumed after {self.resumed} pages read by an earlier attempt")
        out += [f"  course {course}: {count} enrollments read" for course, count in self.enrollments.items()]
        out += [f"  community {c}: {count} memberships read" for c, count in self.memberships.items()]
        if self.templated:
            out.append(f"  not read ahead (templated in the rules): {', '.join(sorted(self.templated))}")
        out.append(f"  contacts known: {self.contacts_known}")
        out.append(f"  requests: {self.requests} in {self.seconds:.1f} s")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "full": self.full,
            "contacts_read": self.contacts_read,
            "contacts_gone": self.contacts_gone,
            "contacts_known": self.contacts_known,
            "enrollments": {str(k): v for k, v in self.enrollments.items()},
            "memberships": {str(k): v for k, v in self.memberships.items()},
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "templated": sorted(self.templated),
            "resumed": self.resumed,
        }


def registered(contact: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(contact.get("registeredAt")))
    except ValueError:
        return None


def contact_email(contact: dict[str, Any]) -> str | None:
    """The email a listed contact is kept under, None for an item that is not a usable contact."""
    email = str(contact.get("email") or "").strip().lower()
    return email if email and str(contact.get("id", "")).isdigit() else None
