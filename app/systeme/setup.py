"""An account's set-up, read and written through a SystemeSession: its contact fields and its webhooks.

From ../shared/systeme/openapi.json: `/api/contact_fields` (`{slug, fieldName}`; POST needs both, the slug matching
`^(\\w+)$`) and `/api/webhooks` (`{id, name, url, active, subscriptions: [{id, event, schemaVersion, disabledAt,
disabledReason}]}`; POST takes `name`, `url`, `secret`, `subscriptions`, `active`; PATCH is a merge-patch without
`url`). Neither has integer ids, so their pages are followed by the last item's slug or id.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from app.systeme.client import SystemeSession

# What Systeme.io webhooks can send (X-Webhook-Event), and the payload schema we read (../shared/systeme/webhooks.md).
EVENTS = ("CONTACT_CREATED", "CONTACT_OPT_IN", "CONTACT_TAG_ADDED", "CONTACT_TAG_REMOVED", "SALE_NEW", "SALE_CANCELED")
SCHEMA_VERSION = 2
SLUG = re.compile(r"^\w+$", re.ASCII)
_MAX_PAGES = 1000  # a safety net against an API that keeps saying hasMore


async def _all(api: SystemeSession, path: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100, "order": "asc"}
    for _ in range(_MAX_PAGES):
        page = await api.get_json(path, params)
        if not isinstance(page, dict):
            break
        found = [i for i in (page.get("items") or []) if isinstance(i, dict)]
        items += found
        last = found[-1].get(key) if found else None
        if not page.get("hasMore") or last is None or last == params.get("startingAfter"):
            break
        params["startingAfter"] = last
    return items


async def contact_fields(api: SystemeSession) -> dict[str, str]:
    """slug -> field name, every field of the account."""
    found = await _all(api, "/api/contact_fields", "slug")
    return {str(f["slug"]): str(f.get("fieldName") or "") for f in found if f.get("slug") is not None}


def field_name(slug: str) -> str:
    """A readable name for a field created from its slug: `favourite_colour` -> `Favourite colour`."""
    words = slug.replace("_", " ").strip()
    return (words[:1].upper() + words[1:])[:255] or slug


def _object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; {} for an empty or odd body (the write happened: its status said so)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def create_field(api: SystemeSession, slug: str) -> dict[str, Any]:
    body = {"slug": slug, "fieldName": field_name(slug)}
    return _object(await api.request("POST", "/api/contact_fields", body=body))


async def webhooks(api: SystemeSession) -> list[dict[str, Any]]:
    return [h for h in await _all(api, "/api/webhooks", "id") if h.get("id") is not None]


def _path(ident: str) -> str:
    return f"/api/webhooks/{quote(ident, safe='')}"


async def webhook(api: SystemeSession, ident: str) -> dict[str, Any] | None:
    """One webhook, or None when the account has no such webhook."""
    response = await api.request("GET", _path(ident), allow=(404,))
    return None if response.status_code == 404 else _object(response)


async def create_webhook(api: SystemeSession, body: dict[str, Any]) -> dict[str, Any]:
    return _object(await api.request("POST", "/api/webhooks", body=body))


async def update_webhook(api: SystemeSession, ident: str, changes: dict[str, Any]) -> dict[str, Any]:
    response = await api.request("PATCH", _path(ident), body=changes, content_type="application/merge-patch+json")
    return _object(response)


async def delete_webhook(api: SystemeSession, ident: str) -> bool:
    """Delete it; False when it did not exist."""
    return (await api.request("DELETE", _path(ident), allow=(404,))).status_code != 404


def events_of(hook: dict[str, Any]) -> list[str]:
    """The events a webhook sends now: its subscriptions Systeme.io has not disabled."""
    subs = hook.get("subscriptions") or []
    found = {str(s.get("event")) for s in subs if isinstance(s, dict) and not s.get("disabledAt")}
    return [e for e in EVENTS if e in found] + sorted(found - set(EVENTS))  # in one order, to compare and show
