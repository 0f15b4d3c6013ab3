"""The contact a run applies to: resolved once per run, through the mirror, with the rule's fields applied."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from app.actions.mirror import Known
from app.store.models import utcnow
from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError
from app.systeme.values import refused_parts, screen


class Contradiction(Exception):
    """An answer contradicts what the mirror or a name cache said: forget it and run the step from fresh reads."""


NO_CONTACT = "no contact in Systeme.io: nothing to remove"


class NoContact(Exception):
    """A step that only takes something away found no contact: it is done, and no contact was created for it."""

    def __init__(self) -> None:
        super().__init__(NO_CONTACT)


def _changes(current: dict[str, str], wanted: dict[str, str], update: str) -> dict[str, str]:
    if update == "never":
        return {}
    if update == "overwrite":
        return {slug: value for slug, value in wanted.items() if current.get(slug) != value}
    # fill: only fields that are empty in Systeme.io, so a customer's own edits are never overwritten
    return {slug: value for slug, value in wanted.items() if not current.get(slug)}


async def send_contact(
    api: SystemeSession,
    method: str,
    path: str,
    body: dict[str, Any],
    *,
    content_type: str = "application/json",
    allow: tuple[int, ...] = (),
) -> tuple[httpx.Response | None, list[str]]:
    """A contact create or patch; a 422 that names fields or the locale is sent once more without them.

    (the answer, or None when nothing was left to send; what was dropped, for the action's note). Any other 422
    is the caller's to read.
    """
    response = await api.request(method, path, body=body, content_type=content_type, allow=(422, *allow))
    if response.status_code != 422:
        return response, []
    try:
        answer = response.json()
    except ValueError:
        answer = None
    slugs, locale = refused_parts(answer, body)
    if not slugs and not locale:
        return response, []
    retry = {key: value for key, value in body.items() if not (locale and key == "locale")}
    if slugs:
        retry["fields"] = [item for item in body.get("fields") or [] if item.get("slug") not in slugs]
        if not retry["fields"]:
            del retry["fields"]
    parts = [f"field {slug}" for slug in sorted(slugs)] + (["locale"] if locale else [])
    them = "them" if len(parts) > 1 else "it"
    dropped = [f"sent without {', '.join(parts)}: Systeme.io refused {them} ({problem(response)})"]
    if not retry:  # a patch of nothing but what was refused
        return None, dropped
    response = await api.request(method, path, body=retry, content_type=content_type, allow=(422, *allow))
    return response, dropped


async def find_contact(api: SystemeSession, email: str) -> dict[str, Any] | None:
    found = await api.first("/api/contacts", {"email": email})
    # The email filter is exact on Systeme.io, but a tolerant match costs nothing.
    if found is not None and str(found.get("email", "")).lower() != email.lower():
        return None
    return found


class ContactHandle:
    """One run's view of its contact: what the mirror knew, what this run read and wrote."""

    def __init__(self, email: str, known: Known | None, *, window: timedelta, complete: bool = False) -> None:
        self.email = email
        self.known = known
        self.window = window
        # The account's mirror is complete (synced under the current mode, app/mirror/): its facts hold at any age,
        # and an email it does not know is not in the account, so it is created with no lookup.
        self.complete = complete
        # The create answered "already used": a contact made behind the mirror's back (counted by the runner).
        self.missed = False
        self.read = False  # found or created by this run: its facts are current whatever the mirror's age
        self.changed = False  # `known` differs from the stored entry
        self._applied: set[str] = set()  # the field specs this run already applied
        self._previous: Known | None = None  # a forgotten entry, kept for the grants of the same contact
        # Systeme.io refused the contact (an invalid address): every step of the run fails with it, unasked.
        self._refused: PermanentApiError | None = None
        # Values left out of a create or patch (too long, an unknown slug, a locale outside the codes): said in the
        # note of the action whose step sent it, then cleared.
        self.notes: list[str] = []

    def fresh(self, now: datetime | None = None) -> bool:
        return self.known is not None and (self.read or self.complete or self.known.fresh(now or utcnow(), self.window))

    def erased(self) -> None:
        """The contact is gone from Systeme.io (deleted, or never there): its mirror entry goes, grants too."""
        self.known = self._previous = None
        self.read = False
        self.changed = True
        self._applied.clear()

    def forget(self) -> None:
        """An answer contradicted the entry: the next use reads the contact again."""
        self._previous, self.known = self.known or self._previous, None
        self.read = False
        self.changed = True
        self._applied.clear()

    async def resolve(
        self,
        api: SystemeSession,
        spec: dict[str, Any],
        *,
        facts: bool = False,
        careful: bool = False,
        create: bool = True,
    ) -> Known:
        """The contact for `spec` ({email, fields, update, locale}), created or updated as the rule says.

        `facts`: the step needs the contact's tags or fields as they are now (a stale entry is read again);
        `careful`: not even a fresh entry will do, unless this run read the contact itself;
        `create=False`: a step that only takes something away, which raises NoContact rather than create one.
        """
        wanted: dict[str, str] = spec.get("fields") or {}
        update = spec.get("update", "fill")
        # Filling fields needs the current ones too; but filling twice is harmless, so a careful step need not.
        current = facts or (bool(wanted) and update != "never") or bool(spec.get("locale"))
        if self._refused is not None:
            raise self._refused
        if self.known is None or (current and not self.fresh()) or (facts and careful and not self.read):
            try:
                await self._read(api, spec, careful=careful, create=create)
            except PermanentApiError as exc:
                self._refused = exc
                raise
        assert self.known is not None
        key = repr(sorted(spec.items()))
        if key not in self._applied:
            await self._apply(api, spec, wanted, update)
            self._applied.add(key)
        return self.known

    async def _read(
        self, api: SystemeSession, spec: dict[str, Any], *, careful: bool = False, create: bool = True
    ) -> None:
        previous = self.known or self._previous
        # A complete mirror that does not know the email: the account has no such contact, or one made behind its
        # back, which the create's "already used" tells (a miss: one find, then on as usual).
        ahead = self.complete and self.known is None
        contact = None if ahead else await find_contact(api, self.email)
        now = utcnow()
        if contact is None and not create:
            # Nothing to take away from a contact that is not there (erased by `forget --in-systeme`, or never
            # made): creating one would bring back the person. A stale entry of it goes.
            if previous is not None:
                self.erased()
            raise NoContact
        if contact is None:
            made = await self._create(api, spec, miss=ahead and not careful)
            # A miss is a contact that was there: read as found (it may have access), the rule's fields still to apply.
            self.known = Known.from_contact(made, now, created=not self.missed)
            if not self.missed:
                # Created with the rule's fields: nothing left to apply.
                self._applied.add(repr(sorted(spec.items())))
        else:
            self.known = Known.from_contact(contact, now, created=False)
        # Grants belong to the contact they were made on; a contact deleted and created again starts with none.
        if previous is not None and previous.contact_id == self.known.contact_id:
            self.known.grants = previous.grants
        self.read = self.changed = True

    async def _create(self, api: SystemeSession, spec: dict[str, Any], *, miss: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"email": self.email}
        wanted, locale, dropped = screen(spec.get("fields") or {}, spec.get("locale"))
        self._dropped(dropped)
        if wanted:
            body["fields"] = [{"slug": slug, "value": value} for slug, value in wanted.items()]
        if locale:
            body["locale"] = locale
        response, refused = await send_contact(api, "POST", "/api/contacts", body)
        self.notes += refused
        assert response is not None  # a create always has its email left to send
        if response.status_code != 422:
            created: dict[str, Any] = response.json()
            return created
        # Another worker may have created it a moment ago; anything else is a real validation error.
        found = await find_contact(api, self.email)
        if found is None:
            raise PermanentApiError(f"creating contact {self.email} was refused: 422 {problem(response)}", status=422)
        self.missed = miss
        return found

    def _dropped(self, dropped: list[str]) -> None:
        if dropped:
            self.notes.append(f"not sent, Systeme.io would refuse it: {', '.join(dropped)}")

    async def _apply(self, api: SystemeSession, spec: dict[str, Any], wanted: dict[str, str], update: str) -> None:
        known = self.known
        assert known is not None
        patch: dict[str, Any] = {}
        changes, locale, dropped = screen(_changes(known.fields, wanted, update), spec.get("locale"))
        self._dropped(dropped)
        if changes:
            patch["fields"] = [{"slug": slug, "value": value} for slug, value in changes.items()]
        if locale and update == "overwrite" and known.locale != locale:
            patch["locale"] = locale
        if not patch:
            return
        path = f"/api/contacts/{known.contact_id}"
        response, refused = await send_contact(
            api, "PATCH", path, patch, content_type="application/merge-patch+json", allow=() if self.read else (404,)
        )
        self.notes += refused
        if response is None:
            return
        if response.status_code == 404:
            raise Contradiction(f"contact {known.contact_id} no longer exists")
        if response.status_code == 422:
            raise PermanentApiError(f"PATCH {path} answered 422: {problem(response)}", status=422)
        known.update(response.json())
        self.changed = True
