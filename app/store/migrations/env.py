"""Alembic environment: always handed a live connection by app.store.migrate (which holds the lock)."""

from __future__ import annotations

from alembic import context

from app.store.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `systeme-flow db upgrade`, which sets up the connection and the lock")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
