"""Maton connections as the CLI and `check --live` use them: plain functions over a MatonClient."""

from __future__ import annotations

from app.config import Settings
from app.maton.client import Connection, MatonClient, MatonError

ACTIVE = "ACTIVE"
STATUSES = ("ACTIVE", "PENDING", "FAILED")


async def list_connections(client: MatonClient, *, status: str | None = ACTIVE) -> list[Connection]:
    """The Systeme.io connections of this Maton key, newest last; `status=None` lists every status."""
    found = await client.list_connections(status=status)
    return sorted(found, key=lambda c: (c.created or "", c.id))


async def create_connection(client: MatonClient) -> Connection:
    """A new Systeme.io connection (PENDING until its `url` is opened and the authorisation given)."""
    created = await client.create_connection()
    if created.url is None:
        # The create answer is not documented to carry the URL; the connection's own page is.
        created = await client.get_connection(created.id)
    return created


async def find_connection(client: MatonClient, connection_id: str) -> Connection | None:
    """The connection, or None when Maton has no such connection."""
    try:
        return await client.get_connection(connection_id)
    except MatonError as exc:
        if exc.status == 404:
            return None
        raise


async def delete_connection(client: MatonClient, connection_id: str) -> None:
    await client.delete_connection(connection_id)


def connection_problem(connection_id: str, found: Connection | None) -> str | None:
    """Why a connection an account names cannot carry its requests, or None when it is ACTIVE."""
    if found is None:
        return f"Maton connection {connection_id} does not exist (see `systeme-flow connections list --status all`)"
    if found.app != "systeme":
        return f"Maton connection {connection_id} is for app '{found.app}', not systeme"
    if found.status == ACTIVE:
        return None
    finish = f": open {found.url} to finish connecting it" if found.url and found.status == "PENDING" else ""
    return f"Maton connection {connection_id} is {found.status}, not ACTIVE{finish}"


def several_active(active: list[Connection]) -> str | None:
    """Why a Maton key with these ACTIVE connections and no connection named is ambiguous, or None.

    Maton sends a request without `Maton-Connection` to whichever connection it picks (its oldest, it says): with a
    seller's two schools connected, buyers would be written into either. So several are never guessed between.
    """
    if len(active) < 2:
        return None
    listed = ", ".join(f"{c.id} (created {c.created or 'at an unknown time'})" for c in active)
    return (
        f"MATON_API_KEY has {len(active)} ACTIVE Systeme.io connections and none is named, so Maton would pick the "
        f"account: set MATON_CONNECTION (or an account's `connection:`) to one of {listed}"
    )


async def unnamed_connection_problem(settings: Settings) -> str | None:
    """`several_active` for the settings' own Maton key, asked of Maton's connections API; MatonError if it cannot
    answer."""
    async with MatonClient.from_settings(settings) as client:
        return several_active(await list_connections(client))
