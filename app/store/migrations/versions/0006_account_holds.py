"""Accounts on hold: their actions wait until a probe of the account passes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account_holds",
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.Column("next_probe_at", TS, nullable=False),
        sa.Column("probes", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_account_holds"),
    )


def downgrade() -> None:
    op.drop_table("account_holds")
