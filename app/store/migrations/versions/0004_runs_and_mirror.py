"""Runs and the contact mirror: step outcomes, the account and the run holding each action; the contacts table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("outcome", sa.Text))
        batch.add_column(sa.Column("account", sa.String(100), nullable=False, server_default="default"))
        batch.add_column(sa.Column("claimed_by", sa.String(40)))
    op.create_table(
        "contacts",
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("contact_id", sa.BigInteger, nullable=False),
        sa.Column("facts", JSON, nullable=False),
        sa.Column("learned_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "email", name="pk_contacts"),
    )


def downgrade() -> None:
    op.drop_table("contacts")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("account")
        batch.drop_column("outcome")
