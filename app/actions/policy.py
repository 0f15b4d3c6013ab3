"""How a run is retried (`RetryPolicy`) and what it tells its caller when it ends (`RunResult`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.store.statuses import ActionStatus, Priority, RunStatus
from app.systeme.quota import MAX_WAIT_SECONDS


@dataclass(frozen=True)
class RetryPolicy:
    # Delays before retries 1, 2, ... (the last repeats); see Settings.retry_schedule.
    delays: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200)
    max_attempts: int = 10
    lease: timedelta = timedelta(seconds=30)
    # How long a run waits for an earlier event's actions of the same contact before it goes anyway.
    ordering_wait: timedelta = timedelta(minutes=10)
    # How long a run waits for an event received before its own to be judged (its contact is unknown until then):
    # the sweep plans an event left unplanned for 30 s, within a sweep period; then a margin (app/store/convergence).
    unjudged_wait: timedelta = timedelta(seconds=60)
    mirror_fresh: timedelta = timedelta(minutes=15)
    # A membership is created asynchronously: a revoke that finds none listed this soon after the join looks again.
    listing_wait: timedelta = timedelta(seconds=60)
    # A run that has taken this long hands its remaining steps to a fresh job (fairness, bounded job time).
    run_seconds: float = 90.0
    # The longest a run's step waits in its slot for the quota; past that the run gives its slot back (RESCHEDULED,
    # not counted) and comes back when the quota refills. Callers outside a worker keep the quota's own bound.
    quota_wait: float = MAX_WAIT_SECONDS

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The API's Retry-After when it gave one; else the schedule, with a little jitter so retries spread."""
        if retry_after is not None:
            return retry_after
        base = self.delays[min(attempt, len(self.delays)) - 1]
        return random.uniform(base * 0.8, base * 1.2)


@dataclass
class RunResult:
    status: RunStatus
    statuses: dict[str, ActionStatus] = field(default_factory=dict)
    next_attempt_at: datetime | None = None
    # The job to schedule for the rescheduled step: (action id, attempt number).
    retry: tuple[str, int] | None = None
    # Runs to hand over now: the contact's next event, or this run's own remainder after a long run.
    follow_up: tuple[tuple[str, int], ...] = ()
    # (account, the API's own words) when the account refused us: the caller puts it on hold.
    held: tuple[str, str] | None = None
    # The rescheduled step's priority: its job goes back in the queue at that rank.
    priority: Priority = Priority.NORMAL

    @property
    def dead(self) -> list[str]:
        return [action_id for action_id, status in self.statuses.items() if status == ActionStatus.DEAD]
