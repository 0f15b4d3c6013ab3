"""A Systeme.io simulator for tests and for trying rules without touching a real account."""

from __future__ import annotations

from starlette.applications import Starlette

from app.simulator.app import Simulator

__all__ = ["Simulator", "create_simulator"]


def create_simulator(*, api_key: str | None = None, rate_limit: int = 0, window_seconds: float = 60.0) -> Starlette:
    sim = Simulator(api_key=api_key, rate_limit=rate_limit, window_seconds=window_seconds)
    # Something to enroll into out of the box, for local trials with the example rules.
    sim.seed(courses=[{"id": 101, "name": "Masterclass"}], communities=[{"id": 7, "name": "Insiders"}])
    return sim.app
