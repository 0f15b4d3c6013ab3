"""Retention (purged events keep their deduplication key) and the alert throttle.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("purged_at", TS))
    op.create_table(
        "alerts",
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("last_sent_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("kind", name="pk_alerts"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("purged_at")
