"""Action priority: under a backlog, runs that grant access are claimed first, the service's own traffic last.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("priority", sa.SmallInteger, nullable=False, server_default="1"))
    # Rows planned before this revision get the default a rule has now: high when its rule grants access.
    op.execute(
        sa.text(
            "UPDATE actions SET priority = 0 WHERE EXISTS (SELECT 1 FROM actions AS grant_ WHERE"
            " grant_.event_id = actions.event_id AND grant_.rule_id = actions.rule_id"
            " AND grant_.kind IN ('enroll', 'add_to_community'))"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("priority")
