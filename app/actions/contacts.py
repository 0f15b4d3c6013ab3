"""Find or create the contact an action applies to, and apply its fields under the rule's update policy."""

from __future__ import annotations

from typing import Any

from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError


def _field_values(contact: dict[str, Any]) -> dict[str, str]:
    return {f["slug"]: f.get("value") or "" for f in contact.get("fields") or [] if isinstance(f, dict) and "slug" in f}


def _changes(current: dict[str, str], wanted: dict[str, str], update: str) -> dict[str, str]:
    if update == "never":
        return {}
    if update == "overwrite":
        return {slug: value for slug, value in wanted.items() if current.get(slug) != value}
    # fill: only fields that are empty in Systeme.io, so a customer's own edits are never overwritten
    return {slug: value for slug, value in wanted.items() if not current.get(slug)}


async def find_contact(api: SystemeSession, email: str) -> dict[str, Any] | None:
    found = await api.first("/api/contacts", {"email": email})
    # The email filter is exact on Systeme.io, but a tolerant match costs nothing.
    if found is not None and str(found.get("email", "")).lower() != email.lower():
        return None
    return found


async def upsert_contact(api: SystemeSession, spec: dict[str, Any]) -> dict[str, Any]:
    """The contact for `spec` ({email, fields, update, locale}), created or updated as the rule says."""
    email: str = spec["email"]
    wanted: dict[str, str] = spec.get("fields") or {}
    contact = await find_contact(api, email)
    if contact is None:
        body: dict[str, Any] = {"email": email}
        if wanted:
            body["fields"] = [{"slug": slug, "value": value} for slug, value in wanted.items()]
        if spec.get("locale"):
            body["locale"] = spec["locale"]
        response = await api.request("POST", "/api/contacts", body=body, allow=(422,))
        if response.status_code != 422:
            created: dict[str, Any] = response.json()
            return created
        # Another worker may have created it a moment ago; anything else is a real validation error.
        contact = await find_contact(api, email)
        if contact is None:
            raise PermanentApiError(f"creating contact {email} was refused: 422 {problem(response)}", status=422)
    changes = _changes(_field_values(contact), wanted, spec.get("update", "fill"))
    patch: dict[str, Any] = {}
    if changes:
        patch["fields"] = [{"slug": slug, "value": value} for slug, value in changes.items()]
    if spec.get("locale") and spec.get("update") == "overwrite" and contact.get("locale") != spec["locale"]:
        patch["locale"] = spec["locale"]
    if patch:
        response = await api.request(
            "PATCH", f"/api/contacts/{contact['id']}", body=patch, content_type="application/merge-patch+json"
        )
        updated: dict[str, Any] = response.json()
        return updated
    return contact
