"""Rule outcomes added by a replay say so, so counts and the event page tell them from the first judgement.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("rule_outcomes") as batch:
        batch.add_column(sa.Column("replayed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("rule_outcomes") as batch:
        batch.drop_column("replayed_at")
