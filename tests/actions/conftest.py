"""Fixtures of the action tests: an engine on each database, and a client of the simulator."""

from __future__ import annotations

import pytest

from app.store.db import create_engine
from app.systeme.client import SystemeClient
from tests.conftest import SIM_KEY


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def client(sim):
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY})
    yield client
    await client.aclose()
