"""Events are planned after the answer: `planned_at` says when, and a partial index finds those never planned.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("planned_at", sa.DateTime(timezone=True)))
    # Every event stored before this revision was planned when it arrived.
    op.execute("UPDATE events SET planned_at = received_at")
    op.create_index(
        "ix_events_unplanned",
        "events",
        ["received_at"],
        postgresql_where=sa.text("planned_at IS NULL"),
        sqlite_where=sa.text("planned_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_unplanned", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("planned_at")
