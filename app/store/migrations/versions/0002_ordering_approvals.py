"""Per-contact ordering, approvals and the operator's trail on actions.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        # "<event time>|<event id>|<rule index>|<seq>": actions of one contact run in this order.
        batch.add_column(sa.Column("order_key", sa.String(120), nullable=False, server_default=""))
        batch.add_column(sa.Column("approval_deadline", TS))
        batch.add_column(sa.Column("decided_by", sa.String(100)))
        batch.add_column(sa.Column("decided_at", TS))
        # What the operator should know about a run: out of order, waited for an earlier action, ...
        batch.add_column(sa.Column("note", sa.Text))
    op.create_index("ix_actions_contact_email_status", "actions", ["contact_email", "status"])


def downgrade() -> None:
    op.drop_index("ix_actions_contact_email_status", "actions")
    with op.batch_alter_table("actions") as batch:
        for column in ("note", "decided_at", "decided_by", "approval_deadline", "order_key"):
            batch.drop_column(column)
