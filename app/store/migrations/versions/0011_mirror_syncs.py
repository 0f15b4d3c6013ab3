"""The complete contact mirror: per account, when `systeme-flow sync` last read it, under which mode, and how far.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "mirror_syncs",
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(160), nullable=False),
        sa.Column("synced_at", TS, nullable=False),
        sa.Column("full_at", TS, nullable=False),
        sa.Column("cursor", JSON, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("misses", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_mirror_syncs"),
    )


def downgrade() -> None:
    op.drop_table("mirror_syncs")
