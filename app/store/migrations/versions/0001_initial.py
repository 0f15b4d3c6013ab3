"""Events, rule outcomes, actions and the API calls they made.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("type", sa.String(200)),
        sa.Column("provider_id", sa.String(300), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("occurred_at", TS),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("rules_version", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("source", "provider_id", name="uq_events_source_provider_id"),
    )
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_table(
        "rule_outcomes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("rule_id", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("contact_email", sa.String(320)),
        sa.PrimaryKeyConstraint("id", name="pk_rule_outcomes"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_rule_outcomes_event_id_events", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_rule_outcomes_event_id", "rule_outcomes", ["event_id"])
    op.create_table(
        "actions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("rule_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("contact", JSON),
        sa.Column("contact_email", sa.String(320)),
        sa.Column("approval", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("lease_until", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_actions_event_id_events", ondelete="CASCADE"),
    )
    op.create_index("ix_actions_status_next_attempt_at", "actions", ["status", "next_attempt_at"])
    op.create_index("ix_actions_event_id", "actions", ["event_id"])
    op.create_table(
        "api_calls",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("action_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("request_body", JSON),
        sa.Column("status_code", sa.Integer),
        sa.Column("response_body", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_calls"),
        sa.ForeignKeyConstraint(
            ["action_id"], ["actions.id"], name="fk_api_calls_action_id_actions", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_api_calls_action_id", "api_calls", ["action_id"])


def downgrade() -> None:
    op.drop_table("api_calls")
    op.drop_table("actions")
    op.drop_table("rule_outcomes")
    op.drop_table("events")
