"""Contact versions: every write of a mirror entry counts one, so a sync's final write can skip the entries a run
wrote while it read the account (its facts are older than theirs).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("version")
