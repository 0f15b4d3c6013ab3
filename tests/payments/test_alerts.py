"""An alert when a buyer paid and got nothing: one message, every buyer named, none hidden by the throttle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.payments.alerts import alert_unserved
from app.pipeline.upkeep import maintain
from app.rules.engine import RuleSet
from app.rules.loader import load_rules
from app.rules.schema import SourceConfig
from app.store import leases
from app.store.db import create_engine
from app.store.models import utcnow
from tests.conftest import SIM_KEY, operator, planned, running
from tests.factories import MASTERCLASS_ONLY_RULES, stripe_checkout, stripe_headers, write_rules
from tests.servers import alert_receiver


@dataclass
class Shop:
    """A one-product shop's settings and rules, with its alerts going to a receiver on loopback."""

    settings: Settings
    sources: Mapping[str, SourceConfig]
    engine: AsyncEngine
    received: list[str]

    @property
    def serving(self) -> Settings:
        """The service's settings: without the alert receiver, so its own upkeep (which runs at its first sweep,
        late on a loaded machine) never names a buyer before the test's explicit call does."""
        return self.settings.model_copy(update={"alert_webhook_url": None})


@asynccontextmanager
async def shop(make_settings, tmp_path, database_url: str, **overrides: Any) -> AsyncIterator[Shop]:
    with alert_receiver() as (alert_url, received):
        settings = make_settings(database_url=database_url, alert_webhook_url=alert_url, **overrides)
        sources = RuleSet(load_rules(write_rules(tmp_path, MASTERCLASS_ONLY_RULES), {})).sources
        engine = create_engine(database_url)
        try:
            # The alerts under test are the test's own calls: the service's upkeep, which would send them too
            # as soon as a buyer is unserved, waits behind a turn held here (app/store/leases.py).
            assert await leases.take(engine, "upkeep", "the test", turn=timedelta(hours=1), now=utcnow())
            yield Shop(settings, sources, engine, received)
        finally:
            await engine.dispose()


async def _post_unmapped(url: str, email: str) -> str:
    event = stripe_checkout(email)
    event["data"]["object"]["metadata"] = {"product": "ebook"}  # no rule maps it
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text
    await planned(url, answer.json()["event_id"])
    return str(answer.json()["event_id"])


async def test_each_unserved_buyer_is_named_once_and_the_throttle_only_groups_them(
    make_settings, database_url, tmp_path
):
    async with shop(make_settings, tmp_path, database_url) as s:
        with running(s.serving) as url:
            await _post_unmapped(url, "ada@yopmail.com")
            now = utcnow()
            assert await alert_unserved(s.engine, s.settings, s.sources, now=now) == 1
            assert await alert_unserved(s.engine, s.settings, s.sources, now=now) == 0  # named already
            await _post_unmapped(url, "bob@yopmail.com")
            await _post_unmapped(url, "cy@yopmail.com")
            # Within the hour: throttled, and so not marked as named.
            assert await alert_unserved(s.engine, s.settings, s.sources, now=now + timedelta(minutes=5)) == 0
            assert await alert_unserved(s.engine, s.settings, s.sources, now=now + timedelta(hours=2)) == 2
    first, grouped = s.received
    assert "1 buyer paid and has no access yet: ada@yopmail.com (ebook, 199.00 EUR): no rule matched" in first
    assert "2 buyers paid and have no access yet" in grouped
    assert "bob@yopmail.com" in grouped and "cy@yopmail.com" in grouped and "ada@" not in grouped


async def test_a_test_purchase_left_from_a_dry_run_is_no_alarm_once_live(make_settings, sqlite_url, tmp_path):
    async with shop(make_settings, tmp_path, sqlite_url, systeme_api_key=None) as s:
        with running(s.serving) as url:
            await _post_unmapped(url, "trial@yopmail.com")
        live = await alert_unserved(s.engine, s.settings, s.sources, now=utcnow(), mode="live:default:0123abcd")
        still_trying = await alert_unserved(s.engine, s.settings, s.sources, now=utcnow(), mode="dry-run")
    assert (live, still_trying) == (0, 1)
    assert len(s.received) == 1 and "trial@yopmail.com" in s.received[0]


async def test_a_dry_runs_test_purchase_does_not_head_the_home_page_once_on_the_simulator(
    make_settings, sqlite_url, tmp_path
):
    async with shop(make_settings, tmp_path, sqlite_url, systeme_api_key=None) as s:
        with running(s.serving.model_copy(update={"systeme_api_key": None})) as url:
            await _post_unmapped(url, "trial@yopmail.com")
            async with operator(url) as http:
                dry = (await http.get("/ui")).text
        # The same database, now with the simulator's key: the dry run's purchase is a leftover, not a buyer.
        with running(s.serving.model_copy(update={"systeme_api_key": SecretStr(SIM_KEY)})) as url:
            await _post_unmapped(url, "buyer@yopmail.com")
            async with operator(url) as http:
                simulated = (await http.get("/ui")).text
    assert "Paid, no access yet" in dry and "trial@yopmail.com" in dry
    head = simulated.split("Paid, no access yet", 1)[1].split("</section>", 1)[0]
    assert "buyer@yopmail.com" in head and "trial@yopmail.com" not in head


async def test_upkeep_alerts_unserved_buyers_and_metrics_count_them(make_settings, sqlite_url, tmp_path):
    async with shop(make_settings, tmp_path, sqlite_url, metrics_token=None) as s:
        with running(s.serving) as url:
            await _post_unmapped(url, "dee@yopmail.com")
            async with httpx.AsyncClient(base_url=url) as http:
                scraped = (await http.get("/metrics")).text
                # A second buyer at once: the next scrape does not judge the week again, the alert names them both.
                await _post_unmapped(url, "eve@yopmail.com")
                rescraped = (await http.get("/metrics")).text
        await maintain(s.engine, s.settings)  # without the rules' sources: no payments alert
        assert s.received == []
        await maintain(s.engine, s.settings, sources=s.sources)
    assert "systeme_flow_payments_unserved 1.0" in scraped and "systeme_flow_payments_unserved 1.0" in rescraped
    assert len(s.received) == 1 and "dee@yopmail.com (ebook, 199.00 EUR): no rule matched" in s.received[0]
    assert "eve@yopmail.com" in s.received[0]
