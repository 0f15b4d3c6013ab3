"""A Systeme.io session that reads for real and only pretends to write: what `--live` previews run on."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import httpx

from app.preview.calls import PlannedCall
from app.systeme.client import SystemeSession

_EMPTY_PAGE = {"items": [], "hasMore": False}


class ReadOnlySession(SystemeSession):
    """GETs go to the account; every other request is recorded in `writes` and answered with a plausible fake.

    Use it with a SystemeClient of its own: fake ids (0) must not land in a shared name cache.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[PlannedCall] = []
        self._contacts: dict[int, dict[str, Any]] = {}

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
        if method == "GET":
            if params and str(params.get("contact")) == "0":
                # A contact that would be created has no enrollments, memberships or subscriptions yet.
                return httpx.Response(200, json=_EMPTY_PAGE)
            response = await super().request(method, path, params=params, body=body, allow=allow)
            for item in response.json().get("items", []) if path == "/api/contacts" else []:
                self._contacts[int(item["id"])] = item
            return response
        self.writes.append(PlannedCall(method, path, body, change=True))
        return self._fake(method, path, body or {})

    def _fake(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        if method == "POST" and path == "/api/contacts":
            return httpx.Response(
                201, json={"id": 0, "email": body.get("email"), "fields": body.get("fields", []), "tags": []}
            )
        if method == "POST" and path == "/api/tags":
            return httpx.Response(201, json={"id": 0, "name": body.get("name")})
        if method == "PATCH" and path.startswith("/api/contacts/"):
            contact = dict(self._contacts.get(int(path.rsplit("/", 1)[-1]), {"id": 0, "tags": []}))
            fields = {f["slug"]: f for f in contact.get("fields", [])}
            fields.update({f["slug"]: f for f in body.get("fields", [])})
            contact["fields"] = list(fields.values())
            return httpx.Response(
                200, content=json.dumps(contact).encode(), headers={"content-type": "application/json"}
            )
        return httpx.Response(204)
