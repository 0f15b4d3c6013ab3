"""Account modes: each event and action records the mode it arrived under (dry run, simulator, a live account), and
`account_modes` the mode each account last ran under, so the contact mirror of one mode is not trusted in another.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

# The runner's words for a step a dry run skipped (app/actions/runner.py DRY_RUN).
_DRY = "dry run: no MATON_API_KEY or SYSTEME_API_KEY is set, nothing was sent"


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("mode", sa.String(160)))
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("mode", sa.String(160)))
    op.create_table(
        "account_modes",
        sa.Column("account", sa.String(100), primary_key=True),
        sa.Column("mode", sa.String(160), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )
    # Rows from before this revision have no mode (they run under any, as they did). The one kind that can be told
    # apart is a dry run: events with a step it skipped are marked, with their steps still waiting (`after: 7d`),
    # so those never run against an account configured since.
    dry = f"SELECT event_id FROM actions WHERE status = 'skipped' AND (outcome = '{_DRY}' OR last_error = '{_DRY}')"
    op.execute(sa.text(f"UPDATE events SET mode = 'dry-run' WHERE id IN ({dry})"))
    op.execute(
        sa.text("UPDATE actions SET mode = 'dry-run' WHERE event_id IN (SELECT id FROM events WHERE mode = 'dry-run')")
    )


def downgrade() -> None:
    op.drop_table("account_modes")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("mode")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("mode")
