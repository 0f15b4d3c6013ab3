"""Fixtures of the mirror sync tests: an engine on each database, and the simulator's account with a complete
mirror (its memberships listed as soon as they are made)."""

from __future__ import annotations

import pytest

from app.accounts.registry import AccountClients
from app.config import rules_environment
from app.rules.loader import parse_rules
from app.store.db import create_engine
from tests.factories import RULES

RULES_FILE = parse_rules(RULES, path="r", env=rules_environment()).file


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    sim.account.membership_delay = 0.0


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def complete(make_settings):
    clients = AccountClients(make_settings(mirror_mode="complete"), RULES_FILE)
    yield clients
    await clients.aclose()
