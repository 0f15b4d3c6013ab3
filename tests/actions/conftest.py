"""Fixtures of the action tests: an engine on each database, and the account clients of the simulator."""

from __future__ import annotations

import pytest

from app.accounts.registry import AccountClients
from app.store.db import create_engine


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def client(make_settings):
    """The account clients a worker builds, here of the simulator's one account (`default`): what runs take."""
    clients = AccountClients(make_settings(), None)
    yield clients
    await clients.aclose()
