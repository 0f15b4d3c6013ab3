"""The account's set-up endpoints: contact fields and webhooks, from ../shared/systeme/openapi.json.

`/api/contact_fields`: GET lists `{slug, fieldName}` (the default fields and the custom ones), POST creates one
(`fieldName` at most 255 characters, `slug` matching `^(\\w+)$`, 422 when the slug is taken). `/api/webhooks`:
GET lists, POST creates (`name`, `url`, `secret`, `subscriptions` as `{event, schemaVersion}` or the deprecated
bare event names, optional `active`), GET / PATCH (merge-patch; no `url`: it cannot be changed) / DELETE one.
Webhook ids are UUIDs, and the secret is never shown again once set. Names and URLs are unique in an account, as
on the real one (../shared/systeme/webhooks.md): a second one is a 422 "This value is already used."
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.simulator.state import Account, Problem, violation

EVENTS = ("CONTACT_CREATED", "CONTACT_TAG_ADDED", "CONTACT_TAG_REMOVED", "CONTACT_OPT_IN", "SALE_NEW", "SALE_CANCELED")
_SLUG = re.compile(r"^(\w+)$")
_PATCHABLE = ("name", "secret", "subscriptions", "active")
JsonReader = Callable[..., Awaitable[dict[str, Any]]]


def _limited(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Cursor pagination over items that have no integer id: `startingAfter` is the last item's `key`."""
    try:
        limit = int(request.query_params.get("limit", "10"))
    except ValueError as exc:
        raise Problem(400, "limit must be an integer") from exc
    if not 10 <= limit <= 100:
        raise Problem(400, "limit must be between 10 and 100")
    order = request.query_params.get("order", "desc")  # the API's default, as for every list
    if order not in ("asc", "desc"):
        raise Problem(400, "order must be asc or desc")
    if order == "desc":
        items = items[::-1]
    after = request.query_params.get("startingAfter")
    if after is not None:
        keys = [str(i[key]) for i in items]
        items = items[keys.index(after) + 1 :] if after in keys else []
    return {"items": items[:limit], "hasMore": len(items) > limit}


def fields_list(request: Request, acc: Account) -> dict[str, Any]:
    return _limited(request, [{"slug": s, "fieldName": n} for s, n in acc.fields.items()], "slug")


def field_create(body: dict[str, Any], acc: Account) -> dict[str, Any]:
    name, slug = body.get("fieldName"), body.get("slug")
    if not isinstance(name, str) or not name.strip():
        raise violation("fieldName", "This value should not be blank.")
    if len(name) > 255:
        raise violation("fieldName", "This value is too long. It should have 255 characters or less.")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise violation("slug", "This value is not valid.")
    if slug in acc.fields:
        raise violation("slug", "This value is already used.")
    acc.fields[slug] = name
    return {"slug": slug, "fieldName": name}


def _subscriptions(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise violation("subscriptions", "This collection should contain 1 element or more.")
    found = []
    for index, item in enumerate(value):
        event, version = (item, 1) if isinstance(item, str) else (None, None)
        if isinstance(item, dict):
            event, version = item.get("event"), item.get("schemaVersion")
            if not isinstance(version, int) or isinstance(version, bool):
                raise violation(f"subscriptions[{index}].schemaVersion", "This value should be of type int.")
        if event not in EVENTS:
            raise violation(f"subscriptions[{index}].event", "The value you selected is not a valid choice.")
        sub = {"id": str(uuid.uuid4()), "event": event, "schemaVersion": version}
        found.append({**sub, "disabledAt": None, "disabledReason": None})
    return found


def _text(body: dict[str, Any], key: str, *, limit: int | None = None) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise violation(key, "This value should not be blank.")
    if limit is not None and len(value) > limit:
        raise violation(key, f"This value is too long. It should have {limit} characters or less.")
    return value


def _active(body: dict[str, Any]) -> bool | None:
    value = body.get("active")
    if value is not None and not isinstance(value, bool):
        raise violation("active", "This value should be of type bool.")
    return value


def _unique(acc: Account, key: str, value: str, ident: str | None = None) -> None:
    if any(hook[key] == value for other, hook in acc.webhooks.items() if other != ident):
        raise violation(key, "This value is already used.")


def public(hook: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hook.items() if k != "secret"}


def webhook_create(body: dict[str, Any], acc: Account) -> dict[str, Any]:
    name, secret, url = _text(body, "name", limit=255), _text(body, "secret"), _text(body, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise violation("url", "This value is not a valid URL.")
    _unique(acc, "name", name)
    _unique(acc, "url", url)
    subscriptions = _subscriptions(body.get("subscriptions"))
    active = _active(body)
    ident = str(uuid.uuid4())
    hook: dict[str, Any] = {
        "id": ident,
        "name": name,
        "url": url,
        "secret": secret,
        "active": True if active is None else active,
        "subscriptions": subscriptions,
    }
    acc.webhooks[ident] = hook
    return public(hook)


def webhook(acc: Account, ident: str) -> dict[str, Any]:
    if ident not in acc.webhooks:
        raise Problem(404, "Not Found")
    return acc.webhooks[ident]


def webhook_patch(body: dict[str, Any], acc: Account, ident: str) -> dict[str, Any]:
    hook = webhook(acc, ident)
    extra = sorted(set(body) - set(_PATCHABLE))
    if extra:
        raise Problem(400, f'Extra attributes are not allowed ("{extra[0]}" is unknown).')
    changes: dict[str, Any] = {}
    if body.get("name") is not None:
        changes["name"] = _text(body, "name", limit=255)
        _unique(acc, "name", changes["name"], ident)
    if body.get("secret") is not None:
        changes["secret"] = _text(body, "secret")
    if "subscriptions" in body:
        changes["subscriptions"] = _subscriptions(body["subscriptions"])
    if (active := _active(body)) is not None:
        changes["active"] = active
    hook.update(changes)
    return public(hook)


def routes(read_json: JsonReader) -> list[tuple[str, str, Callable[[Request, Account], Awaitable[Any]]]]:
    """(path, method, handler) for the simulator to wrap with its key, quota, faults and call log."""

    async def create_field(request: Request, acc: Account) -> Any:
        return JSONResponse(field_create(await read_json(request), acc), status_code=201)

    async def list_fields(request: Request, acc: Account) -> Any:
        return fields_list(request, acc)

    async def list_hooks(request: Request, acc: Account) -> Any:
        return _limited(request, [public(h) for h in acc.webhooks.values()], "id")

    async def create_hook(request: Request, acc: Account) -> Any:
        return JSONResponse(webhook_create(await read_json(request), acc), status_code=201)

    async def get_hook(request: Request, acc: Account) -> Any:
        return public(webhook(acc, request.path_params["id"]))

    async def patch_hook(request: Request, acc: Account) -> Any:
        body = await read_json(request, media="application/merge-patch+json")
        return webhook_patch(body, acc, request.path_params["id"])

    async def delete_hook(request: Request, acc: Account) -> Any:
        webhook(acc, request.path_params["id"])
        del acc.webhooks[request.path_params["id"]]
        return Response(status_code=204)

    return [
        ("/api/contact_fields", "GET", list_fields),
        ("/api/contact_fields", "POST", create_field),
        ("/api/webhooks", "GET", list_hooks),
        ("/api/webhooks", "POST", create_hook),
        ("/api/webhooks/{id}", "GET", get_hook),
        ("/api/webhooks/{id}", "PATCH", patch_hook),
        ("/api/webhooks/{id}", "DELETE", delete_hook),
    ]
