"""Payments an operator marked handled: who, when and why, so an unserved buyer dealt with by hand (a refund, access
given in Systeme.io directly) stops heading the dashboard and raising the alert.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payments_handled",
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("handled_by", sa.String(100), nullable=False),
        sa.Column("handled_at", TS, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_payments_handled"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_payments_handled_event_id_events", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("payments_handled")
