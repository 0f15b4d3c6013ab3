"""Loops broken: a rule fires for one contact at most RULE_FIRES_PER_CONTACT times an hour; past that, the actions
of its further fires wait for an operator's approval instead of running.

Why: Systeme.io fires `CONTACT_TAG_ADDED` for the tags we add ourselves, so a rule on it that adds a tag can
ping-pong with the seller's own Systeme.io automation (or with another rule) forever. Systeme.io stops its own
automations for a contact after 20 fires; we hold ours at the same count, visibly, rather than drop anything.

The fires are counted from the rows already kept (the rule's `matched` outcomes for that contact, of events received
in the last hour), so no table of counters is needed. Replays are an operator's deliberate act and do not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.engine import RuleOutcome
from app.store.models import events, rule_outcomes

WINDOW = timedelta(hours=1)

Fire = tuple[str, str]  # (rule id, contact email)


def fires_of(outcomes: Iterable[RuleOutcome]) -> list[Fire]:
    return [(o.rule_id, o.contact_email) for o in outcomes if o.decision == "matched" and o.contact_email]


async def recent_fires(conn: AsyncConnection, wanted: set[Fire], *, now: datetime) -> dict[Fire, int]:
    """How often each (rule, contact) of `wanted` fired for events received in the hour before `now`."""
    if not wanted:
        return {}
    query = (
        sa.select(rule_outcomes.c.rule_id, rule_outcomes.c.contact_email, sa.func.count())
        .join(events, events.c.id == rule_outcomes.c.event_id)
        .where(
            rule_outcomes.c.decision == "matched",
            rule_outcomes.c.replayed_at.is_(None),
            rule_outcomes.c.rule_id.in_({rule for rule, _ in wanted}),
            rule_outcomes.c.contact_email.in_({email for _, email in wanted}),
            events.c.received_at >= now - WINDOW,
        )
        .group_by(rule_outcomes.c.rule_id, rule_outcomes.c.contact_email)
    )
    return {(rule, email): count for rule, email, count in await conn.execute(query)}


def hold_past_limit(
    plans: Sequence[tuple[str, Sequence[RuleOutcome]]],
    rows: Sequence[dict[str, Any]],
    known: Mapping[Fire, int],
    *,
    limit: int,
    deadlines: Mapping[str, datetime],
) -> list[str]:
    """Turn the actions of each fire past `limit` (counting `known` ones, then the batch's own in order) into
    approvals with a note saying why; returns one line per (rule, contact) held. `rows` are changed in place."""
    counted = dict(known)
    over: dict[tuple[str, Fire], int] = {}
    for event_id, outcomes in plans:
        for fire in fires_of(outcomes):
            counted[fire] = counted.get(fire, 0) + 1
            if counted[fire] > limit:
                over[(event_id, fire)] = counted[fire]
    held: dict[Fire, int] = {}
    for row in rows:
        fire = (row["rule_id"], row["contact_email"])
        count = over.get((row["event_id"], fire))
        if count is None or row["status"] == "awaiting_approval":
            continue
        row["status"] = "awaiting_approval"
        row["approval_deadline"] = deadlines[row["event_id"]]
        row["note"] = (
            f"rule {fire[0]!r} fired {count} times for {fire[1]} within an hour, more than RULE_FIRES_PER_CONTACT="
            f"{limit}: held for approval in case it loops (with a Systeme.io automation or another rule)"
        )
        held[fire] = max(held.get(fire, 0), count)
    return [f"{rule} for {email} ({count} fires)" for (rule, email), count in held.items()]
