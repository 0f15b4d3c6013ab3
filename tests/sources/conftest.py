"""The source tests judge signatures made when each test runs: their NOW is that moment, not the module's import."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(autouse=True)
def _now(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Signatures are timestamped with the clock at the call; a NOW fixed at collection falls outside the sources'
    # tolerance (180 to 300 s) once a full suite on a loaded machine takes longer than that to reach these tests.
    if hasattr(request.module, "NOW"):
        monkeypatch.setattr(request.module, "NOW", time.time())
