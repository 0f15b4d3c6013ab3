"""What we know of one Systeme.io contact, so a run skips the reads and checks that cannot change its outcome.

Learned from API answers (a contact found, created or patched; enrollments and memberships listed) and from our own
successful writes. Two kinds of knowledge, trusted differently:
- ids (the contact's, and what we granted: the tag id we added, the enrollment we created) are trusted at any age:
  they are only used to address a request, and an answer that contradicts them (404, 422) drops the entry and the
  step runs again from a fresh read;
- facts (fields, tags, which courses and communities the contact has or lacks) are trusted only while fresh, since
  anyone may change them by hand in Systeme.io.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# A course or community: the enrollment or membership id (None when the API did not tell it), or False: known absent.
Access = int | None | bool


@dataclass
class Known:
    contact_id: int
    learned_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=dict)
    locale: str | None = None
    # We created the contact: it has no enrollment or membership we did not record.
    created: bool = False
    courses: dict[int, Access] = field(default_factory=dict)
    communities: dict[int, Access] = field(default_factory=dict)
    # What our own writes granted, by the rule's reference: "tag:<name>" -> tag id. Kept across refreshes, so a
    # refund removes the tag we added even if it was renamed since.
    grants: dict[str, int] = field(default_factory=dict)
    # When a tag's presence or absence was last learned, where later than `learned_at` (our write of it, a tag
    # webhook): a tag webhook that happened before what we know is stale, and must not undo it.
    tag_times: dict[int, datetime] = field(default_factory=dict)

    def tag_known_at(self, tag: int) -> datetime:
        """The time of what we know of `tag` on this contact: its own time, or the entry's."""
        own = self.tag_times.get(tag)
        return max(own, self.learned_at) if own is not None else self.learned_at

    def set_tag(self, tag: int, name: str | None, at: datetime | None = None) -> None:
        """`tag` present (with its `name`) or absent (`name` None), as learned at `at` (now by default)."""
        if name is None:
            self.tags.pop(tag, None)
        else:
            self.tags[tag] = name
        self.tag_times[tag] = at or datetime.now(UTC)

    def fresh(self, now: datetime, window: timedelta) -> bool:
        return now - self.learned_at < window

    def has_course(self, course: int) -> Access:
        """The enrollment (id or None) when known enrolled, False when known absent; raises KeyError if unknown."""
        if course in self.courses:
            return self.courses[course]
        if self.created:
            return False
        raise KeyError(course)

    def has_community(self, community: int) -> Access:
        if community in self.communities:
            return self.communities[community]
        if self.created:
            return False
        raise KeyError(community)

    def update(self, contact: dict[str, Any]) -> None:
        """A contact answer: its fields and tags as they are now; access facts are not in it and stay."""
        self.fields = contact_fields(contact)
        tags = contact_tags(contact)
        now = datetime.now(UTC)
        for tag in {*self.tags, *tags}:
            self.tag_times[tag] = now
        self.tags = tags
        self.locale = str(contact["locale"]) if contact.get("locale") else None

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "tags": {str(k): v for k, v in self.tags.items()},
            "locale": self.locale,
            "created": self.created,
            "courses": {str(k): v for k, v in self.courses.items()},
            "communities": {str(k): v for k, v in self.communities.items()},
            "grants": self.grants,
            # Only the times that say more than the entry's own.
            "tag_times": {str(k): v.isoformat() for k, v in self.tag_times.items() if v > self.learned_at},
        }

    @classmethod
    def from_json(cls, contact_id: int, facts: dict[str, Any], learned_at: datetime) -> Known:
        return cls(
            contact_id=contact_id,
            learned_at=learned_at,
            fields={str(k): str(v) for k, v in (facts.get("fields") or {}).items()},
            tags={int(k): str(v) for k, v in (facts.get("tags") or {}).items()},
            locale=facts.get("locale"),
            created=bool(facts.get("created")),
            courses={int(k): v for k, v in (facts.get("courses") or {}).items()},
            communities={int(k): v for k, v in (facts.get("communities") or {}).items()},
            grants={str(k): int(v) for k, v in (facts.get("grants") or {}).items()},
            tag_times={int(k): datetime.fromisoformat(v) for k, v in (facts.get("tag_times") or {}).items()},
        )

    @classmethod
    def from_contact(cls, contact: dict[str, Any], now: datetime, *, created: bool) -> Known:
        known = cls(contact_id=int(contact["id"]), learned_at=now, created=created)
        known.update(contact)
        known.tag_times.clear()  # all learned at `now`
        return known


def contact_fields(contact: dict[str, Any]) -> dict[str, str]:
    return {
        str(f["slug"]): str(f.get("value") or "")
        for f in contact.get("fields") or []
        if isinstance(f, dict) and "slug" in f
    }


def contact_tags(contact: dict[str, Any]) -> dict[int, str]:
    return {
        int(t["id"]): str(t.get("name", ""))
        for t in contact.get("tags") or []
        if isinstance(t, dict) and str(t.get("id", "")).isdigit()
    }
