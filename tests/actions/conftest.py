"""Fixtures of the action tests (the engine on each database is tests/conftest.py's): the account clients of the
simulator."""

from __future__ import annotations

import pytest

from app.accounts.registry import AccountClients


@pytest.fixture
async def client(make_settings):
    """The account clients a worker builds, here of the simulator's one account (`default`): what runs take."""
    clients = AccountClients(make_settings(), None)
    yield clients
    await clients.aclose()
