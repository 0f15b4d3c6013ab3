"""Tables. The database is the source of truth: Redis only carries work that can be rebuilt from here."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, whatever the backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id(prefix: str) -> str:
    """Sortable string ids: milliseconds since the epoch, then randomness."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("type", sa.String(200)),
    # The provider's event id; for sources without one, a value unique to the delivery.
    sa.Column("provider_id", sa.String(300), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("occurred_at", UTCDateTime()),
    sa.Column("headers", JSON, nullable=False),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("rules_version", sa.String(40), nullable=False),
    # Set when retention emptied the event: only its deduplication key remains, so a late redelivery is known.
    sa.Column("purged_at", UTCDateTime()),
    # Set when the rules judged the event and its outcomes and actions were stored. Ingest stores the event alone
    # and answers; planning follows in the same process, or in a sweep after a crash (see app/pipeline/planner.py).
    sa.Column("planned_at", UTCDateTime()),
    # The mode of the default account when it arrived (app/accounts/modes.py); null for events from before modes.
    sa.Column("mode", sa.String(160)),
    sa.UniqueConstraint("source", "provider_id"),
    sa.Index(None, "received_at"),
    # The sweep's question, "which events were never planned?", reads only those rows.
    sa.Index(
        "ix_events_unplanned",
        "received_at",
        postgresql_where=sa.text("planned_at IS NULL"),
        sqlite_where=sa.text("planned_at IS NULL"),
    ),
)

rule_outcomes = sa.Table(
    "rule_outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(40), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("rule_id", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("contact_email", sa.String(320)),
    # Set on the outcomes a replay added (when it ran); null for the judgement made when the event arrived.
    sa.Column("replayed_at", UTCDateTime()),
    sa.Index(None, "event_id"),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("event_id", sa.String(40), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("rule_id", sa.String(200), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("params", JSON, nullable=False),
    sa.Column("contact", JSON),
    sa.Column("contact_email", sa.String(320)),
    sa.Column("approval", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # "<event time>|<event id>|<rule index>|<seq>": actions of one contact run in this order.
    sa.Column("order_key", sa.String(120), nullable=False, server_default=""),
    sa.Column("approval_deadline", UTCDateTime()),
    sa.Column("decided_by", sa.String(100)),
    sa.Column("decided_at", UTCDateTime()),
    sa.Column("note", sa.Text),
    # What the step found or did ("tagged", "already enrolled"): the operator's one-line answer.
    sa.Column("outcome", sa.Text),
    # The Systeme.io account the action runs against (a name from `accounts:`; "default" is the settings' one).
    sa.Column("account", sa.String(100), nullable=False, server_default="default"),
    # Priority.rank (0 high, 1 normal, 2 low): under a backlog smaller ranks are claimed first, then order_key.
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="1"),
    # The run that holds this row while it is `running`: only that run may record its result.
    sa.Column("claimed_by", sa.String(40)),
    # The mode of its account when it was planned (app/accounts/modes.py): it runs only while the account is in it.
    sa.Column("mode", sa.String(160)),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "event_id"),
    sa.Index(None, "contact_email", "status"),
)

# One row per Systeme.io request an action made, with the answer: what an operator reads to see why.
api_calls = sa.Table(
    "api_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action_id", sa.String(40), sa.ForeignKey("actions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("path", sa.String(500), nullable=False),
    sa.Column("request_body", JSON),
    sa.Column("status_code", sa.Integer),
    sa.Column("response_body", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Index(None, "action_id"),
)

# What we know of each account's contacts, learned from API answers and our own writes (see app/actions/mirror.py).
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("email", sa.String(320), primary_key=True),
    sa.Column("contact_id", sa.BigInteger, nullable=False),
    sa.Column("facts", JSON, nullable=False),
    sa.Column("learned_at", UTCDateTime(), nullable=False),
    # Counts the entry's writes: a sync writes back only the entries still at the version it read (app/mirror/).
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
)

# The complete mirror (app/mirror/): when each account's contacts were last read whole or in part by a sync, under
# which mode (a mirror is complete only for the mode it was synced in), where the next incremental read starts, and
# the misses since (a create refused because the contact existed behind the mirror's back).
mirror_syncs = sa.Table(
    "mirror_syncs",
    metadata,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("mode", sa.String(160), nullable=False),
    sa.Column("synced_at", UTCDateTime(), nullable=False),
    sa.Column("full_at", UTCDateTime(), nullable=False),
    sa.Column("cursor", JSON, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("misses", sa.Integer, nullable=False),
)

# Accounts on hold: Systeme.io said the account itself is unusable (a revoked key, no connection). Their actions
# wait, unclaimed, until a probe passes.
account_holds = sa.Table(
    "account_holds",
    metadata,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("next_probe_at", UTCDateTime(), nullable=False),
    sa.Column("probes", sa.Integer, nullable=False, default=0),
)

# The mode each account last started under: when it changes, what the contact mirror learned is forgotten (ids
# learned from the simulator mean other people in a live account).
account_modes = sa.Table(
    "account_modes",
    metadata,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column("mode", sa.String(160), nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
)

# When each kind of alert was last sent: at most one message per kind per hour.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("last_sent_at", UTCDateTime(), nullable=False),
)

# Payments an operator marked handled (a refund, access given by hand): they no longer count as unserved.
payments_handled = sa.Table(
    "payments_handled",
    metadata,
    sa.Column("event_id", sa.String(40), sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("handled_by", sa.String(100), nullable=False),
    sa.Column("handled_at", UTCDateTime(), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# One row per background duty that must have one holder at a time (app/store/leases.py): who took its current
# turn and until when. In the database, not Redis, so a Redis flush cannot hand a turn to a second process.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("duty", sa.String(60), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# Dashboard sessions: a cookie is honoured only while its row exists, so signing out ends it on the server.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie's random id
    sa.Column("operator", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index(None, "expires_at"),
)

Row = dict[str, Any]
