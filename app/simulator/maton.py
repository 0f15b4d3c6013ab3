"""Maton's control API as the simulator answers it: Systeme.io connections, and the proxy's connection check.

Written from Maton's documentation (the `systeme` and api-gateway skills, the CLI manual): `GET /connections`
(`app`, `status` filters) → `{"connections": [...]}`, `POST /connections` `{"app"}`, `GET` and `DELETE
/connections/{connection_id}` (`{"connection": {...}}`), with `Authorization: Bearer <key>`. A new connection is
PENDING with a `url` to open; here that URL is `/_sim/connect?session_token=...` on the simulator itself, and
opening it finishes the "OAuth" (the connection becomes ACTIVE). `POST /_sim/connections/{id}` `{"status"}` sets
any status, for tests. Like the proxy, a Systeme.io request whose `Maton-Connection` names a connection that is
unknown or not ACTIVE is answered 400.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

STATUSES = ("ACTIVE", "PENDING", "FAILED")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Connections:
    """The connections of one Maton account, by id, in creation order."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # session token -> connection id

    def create(self, app: str, base_url: str) -> dict[str, Any]:
        ident, token = str(uuid.uuid4()), secrets.token_hex(16)
        now = _now()
        connection = {
            "connection_id": ident,
            "status": "PENDING",
            "creation_time": now,
            "last_updated_time": now,
            "url": f"{base_url.rstrip('/')}/_sim/connect?session_token={token}",
            "app": app,
            "method": "OAUTH2",
            "metadata": {},
        }
        self.items[ident] = connection
        self.tokens[token] = ident
        return connection

    def set_status(self, ident: str, status: str) -> dict[str, Any] | None:
        connection = self.items.get(ident)
        if connection is not None:
            connection.update(status=status, last_updated_time=_now())
        return connection

    def refusal(self, ident: str) -> str | None:
        """Why the proxy would refuse a request naming this connection, or None."""
        connection = self.items.get(ident)
        if connection is None or connection["app"] != "systeme":
            return f"Connection {ident} not found for app systeme"
        if connection["status"] != "ACTIVE":
            return f"Connection {ident} is not active (status {connection['status']})"
        return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class MatonControl:
    """The control API's routes, bound to one `Connections` and the simulator's key."""

    def __init__(self, connections: Connections, api_key: Any) -> None:
        self.connections = connections
        self._key = api_key  # a callable: the simulator's current key (tests change it)

    def _refused(self, request: Request) -> Response | None:
        key = self._key()
        given = request.headers.get("authorization", "")
        if key is not None and given != f"Bearer {key}":
            return _error(401, "Invalid API key")
        return None

    async def list_connections(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        app, status = request.query_params.get("app"), request.query_params.get("status")
        if status is not None and status not in STATUSES:
            return _error(400, f"status must be one of {', '.join(STATUSES)}")
        found = [
            c for c in self.connections.items.values() if app in (None, c["app"]) and status in (None, c["status"])
        ]
        return JSONResponse({"connections": found})

    async def create_connection(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "Invalid JSON body")
        app = body.get("app") if isinstance(body, dict) else None
        if not isinstance(app, str) or not app.strip():
            return _error(400, "app is required")
        return JSONResponse({"connection": self.connections.create(app, str(request.base_url))})

    async def get_connection(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        connection = self.connections.items.get(request.path_params["id"])
        if connection is None:
            return _error(404, "Connection not found")
        return JSONResponse({"connection": connection})

    async def delete_connection(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if self.connections.items.pop(request.path_params["id"], None) is None:
            return _error(404, "Connection not found")
        return JSONResponse({})

    async def finish_oauth(self, request: Request) -> Response:
        ident = self.connections.tokens.get(request.query_params.get("session_token", ""))
        if ident is None or self.connections.set_status(ident, "ACTIVE") is None:
            return PlainTextResponse("This connection link is not valid.", status_code=404)
        return PlainTextResponse(f"Connected: connection {ident} is ACTIVE. You can close this page.")

    async def set_status(self, request: Request) -> Response:
        body = await request.json()
        status = body.get("status", "ACTIVE") if isinstance(body, dict) else None
        if status not in STATUSES:
            return _error(400, f"status must be one of {', '.join(STATUSES)}")
        connection = self.connections.set_status(request.path_params["id"], status)
        return JSONResponse({"connection": connection}) if connection else _error(404, "Connection not found")

    def routes(self) -> list[Route]:
        return [
            Route("/connections", self.list_connections, methods=["GET"]),
            Route("/connections", self.create_connection, methods=["POST"]),
            Route("/connections/{id}", self.get_connection, methods=["GET"]),
            Route("/connections/{id}", self.delete_connection, methods=["DELETE"]),
            Route("/_sim/connect", self.finish_oauth, methods=["GET"]),
            Route("/_sim/connections/{id}", self.set_status, methods=["POST"]),
        ]
