"""Stored work by account mode: what is left from other modes, and what discarding test data removes."""

from __future__ import annotations

import sqlalchemy as sa

from app.accounts.modes import DRY_RUN
from app.rules.engine import PlannedAction, RuleOutcome
from app.store.db import create_engine
from app.store.models import actions, events, utcnow
from app.store.modes import discard_test_data, leftovers
from tests.factories import PlannedEvent, record_event

SIM = "simulator:default:aaaa1111"
LIVE = "live:default:bbbb2222"
SHOP = "live:shop:cccc3333"


def purchase(email: str, *, accounts: tuple[str, ...] = ("default",)) -> RuleOutcome:
    planned = tuple(
        PlannedAction("r", seq, "tag", {"name": "Buyer"}, {"email": email}, "none", account=account)
        for seq, account in enumerate(accounts)
    )
    return RuleOutcome("r", "matched", "matched", email, planned)


async def arriving(engine, email: str, modes: dict[str, str | None], **kw: tuple[str, ...]) -> PlannedEvent:
    outcomes = [purchase(email, **kw)]
    return await record_event(
        engine,
        source="stripe",
        event_type="t",
        provider_id=None,
        payload={},
        headers={},
        occurred_at=None,
        outcomes=outcomes,
        rules_version="v",
        now=utcnow(),
        modes=modes,
    )


async def test_discard_keeps_the_current_mode_and_what_went_to_a_live_account(database_url):
    engine = create_engine(database_url)
    try:
        dry = await arriving(engine, "dry@yopmail.com", {"default": DRY_RUN})
        sim = await arriving(engine, "sim@yopmail.com", {"default": SIM})
        # The default account in a dry run, a named account live: the event is that account's history.
        both = await arriving(
            engine, "shop@yopmail.com", {"default": DRY_RUN, "shop": SHOP}, accounts=("default", "shop")
        )
        live = await arriving(engine, "live@yopmail.com", {"default": LIVE})
        now = {"default": LIVE, "shop": SHOP}
        found = {left.mode: (left.events, left.actions) for left in await leftovers(engine, now)}
        assert found == {DRY_RUN: (1, 2), SIM: (1, 1)}
        gone = {g.mode: (g.events, g.actions) for g in await discard_test_data(engine, now)}
        assert gone == {DRY_RUN: (1, 2), SIM: (1, 1)}
        async with engine.connect() as conn:
            kept_events = set((await conn.execute(sa.select(events.c.id))).scalars())
            kept_actions = {(r.event_id, r.account) for r in await conn.execute(sa.select(actions))}
        assert kept_events == {both.event_id, live.event_id}
        assert kept_actions == {(both.event_id, "shop"), (live.event_id, "default")}
        assert await leftovers(engine, now) == []
        assert dry.event_id not in kept_events and sim.event_id not in kept_events
    finally:
        await engine.dispose()
