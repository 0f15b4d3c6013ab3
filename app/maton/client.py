"""Maton's control API: the connections that let the Maton proxy reach a Systeme.io account.

Written from Maton's own documentation of these endpoints: the `systeme` skill and the api-gateway skill
(github.com/maton-ai/api-gateway-skill, SKILL.md, "Connection Management", and references/systeme) and the CLI
manual (github.com/maton-ai/cli.maton.ai, manual/maton/connection/{list,create,get,delete}.md):

- `GET /connections?app=systeme&status=ACTIVE` → `{"connections": [Connection, ...]}` (status ACTIVE, PENDING or
  FAILED);
- `POST /connections` `{"app": "systeme"}` creates one; open its `url` in a browser to finish the OAuth;
- `GET /connections/{connection_id}` → `{"connection": Connection}`;
- `DELETE /connections/{connection_id}`;

a Connection being `{connection_id, status, creation_time, last_updated_time, url, app, method, metadata}`, with
`Authorization: Bearer <MATON_API_KEY>`. The create answer's shape is not shown there (the CLI lists the same
fields for it), so it is read either wrapped in `connection` or bare, and a missing `url` is fetched with a GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from app.config import Settings
from app.systeme.client import problem

APP = "systeme"


class MatonError(Exception):
    """Maton refused or could not answer; `status` is None for a network error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Connection:
    id: str
    status: str
    app: str = APP
    url: str | None = None
    created: str | None = None
    updated: str | None = None
    method: str | None = None

    @classmethod
    def parse(cls, body: Any) -> Connection:
        data = body.get("connection", body) if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise MatonError(f"Maton answered something that is not a connection: {str(body)[:200]}")
        ident = data.get("connection_id") or data.get("connectionId") or data.get("id")
        if not ident:
            raise MatonError(f"Maton answered a connection without an id: {str(body)[:200]}")

        def text(*keys: str) -> str | None:
            value = next((data[k] for k in keys if data.get(k) is not None), None)
            return str(value) if value is not None else None

        return cls(
            id=str(ident),
            status=str(data.get("status") or "UNKNOWN").upper(),
            app=str(data.get("app") or APP),
            url=text("url"),
            created=text("creation_time", "creationTime"),
            updated=text("last_updated_time", "lastUpdatedTime"),
            method=text("method"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.id,
            "status": self.status,
            "app": self.app,
            "url": self.url,
            "creation_time": self.created,
            "last_updated_time": self.updated,
            "method": self.method,
        }


class MatonClient:
    """One httpx client for the control API; `async with` closes it."""

    def __init__(
        self, *, base_url: str, api_key: str, timeout: float = 15.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "systeme-flow"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MatonClient:
        if settings.maton_api_key is None:
            raise MatonError("MATON_API_KEY is not set: Maton connections need your Maton API key")
        return cls(
            base_url=settings.maton_control_url,
            api_key=settings.maton_api_key.get_secret_value(),
            timeout=settings.http_timeout_seconds,
        )

    async def __aenter__(self) -> MatonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MatonError(f"{method} {path}: Maton could not be reached: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            status = response.status_code
            raise MatonError(f"{method} {path} answered {status}: {problem(response)}", status=status)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise MatonError(f"{method} {path}: Maton answered something that is not JSON") from exc

    async def list_connections(self, *, status: str | None = "ACTIVE") -> list[Connection]:
        params = {"app": APP, **({"status": status} if status else {})}
        body = await self._json("GET", "/connections", params=params)
        items = body.get("connections") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise MatonError(f"GET /connections: expected {{'connections': [...]}}, got {str(body)[:200]}")
        return [Connection.parse(item) for item in items]

    async def create_connection(self) -> Connection:
        return Connection.parse(await self._json("POST", "/connections", json={"app": APP}))

    async def get_connection(self, connection_id: str) -> Connection:
        return Connection.parse(await self._json("GET", f"/connections/{_segment(connection_id)}"))

    async def delete_connection(self, connection_id: str) -> None:
        await self._send("DELETE", f"/connections/{_segment(connection_id)}")


def _segment(value: str) -> str:
    # An id typed by hand must stay one path segment: `/`, `?` or `..` in it would reach another endpoint.
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if value and set(value) <= {"."} else encoded or "-"
