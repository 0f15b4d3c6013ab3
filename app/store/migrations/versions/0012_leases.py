"""Leases: the background duties that must have one holder at a time across every API replica and worker.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("duty", sa.String(60), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("duty", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
