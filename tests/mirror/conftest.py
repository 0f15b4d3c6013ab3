"""Fixtures of the mirror sync tests (the engine and the complete-mirror clients are tests/conftest.py's): the
simulator's memberships listed as soon as they are made."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def memberships_listed_at_once(sim):
    sim.account.membership_delay = 0.0
