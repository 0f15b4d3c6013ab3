"""The contact mirror's rows: per account and email, the Systeme.io contact id and what we know of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.models import contacts


@dataclass(frozen=True)
class ContactWrite:
    """The entry to store; `contact_id` None deletes it (an answer contradicted it and nothing replaced it)."""

    account: str
    email: str
    contact_id: int | None
    facts: dict[str, Any]
    learned_at: datetime | None


async def load_contact(engine: AsyncEngine, account: str, email: str) -> tuple[int, dict[str, Any], datetime] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(contacts.c.contact_id, contacts.c.facts, contacts.c.learned_at).where(
                    contacts.c.account == account, contacts.c.email == email
                )
            )
        ).first()
    return (int(row.contact_id), dict(row.facts), row.learned_at) if row is not None else None


async def write_contact(conn: AsyncConnection, entry: ContactWrite) -> None:
    key = sa.and_(contacts.c.account == entry.account, contacts.c.email == entry.email)
    if entry.contact_id is None or entry.learned_at is None:
        await conn.execute(contacts.delete().where(key))
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {
        "account": entry.account,
        "email": entry.email,
        "contact_id": entry.contact_id,
        "facts": entry.facts,
        "learned_at": entry.learned_at,
        "version": 1,
    }
    insert = dialect.insert(contacts).values(values)
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=["account", "email"],
            set_={
                "contact_id": entry.contact_id,
                "facts": entry.facts,
                "learned_at": entry.learned_at,
                # A sync reading the account meanwhile sees the entry changed and leaves it as written here.
                "version": contacts.c.version + 1,
            },
        )
    )


async def forget_contacts(conn: AsyncConnection, email: str) -> None:
    """Privacy: a person's entry goes with the rest of what is stored about them."""
    await conn.execute(contacts.delete().where(contacts.c.email == email.strip().lower()))


async def distrust_contact(conn: AsyncConnection, account: str, email: str) -> None:
    """Make the next run read the contact's facts again (tags, enrollments, memberships); its ids stay trusted.

    For when we learned from elsewhere (a drift check) that the facts no longer hold.
    """
    await conn.execute(
        contacts.update()
        .where(contacts.c.account == account, contacts.c.email == email)
        .values(learned_at=datetime(1970, 1, 1, tzinfo=UTC))
    )
