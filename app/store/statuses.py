"""Every status in one place. StrEnums: each compares equal to, and is stored and serialised as, its plain string,
so rows, the JSON API and the dashboard read exactly as before."""

from __future__ import annotations

from enum import StrEnum


class ActionStatus(StrEnum):
    """An action row's state (app/store/actions.py holds the transitions)."""

    PENDING = "pending"  # due: the next sweep or hint runs it
    SCHEDULED = "scheduled"  # a step over time, or an approved action whose time is still to come
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"  # claimed, under a lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a permanent error
    DEAD = "dead"  # transient errors on every attempt
    SKIPPED = "skipped"  # dry run, or its condition was not met
    REJECTED = "rejected"  # by an operator, or its approval expired
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    """How one run ended (app/actions/runner.py)."""

    DONE = "done"
    RESCHEDULED = "rescheduled"  # a step will be tried again at its next attempt time
    HELD = "held"  # the account refused us: the caller puts it on hold
    NOT_CLAIMED = "not_claimed"  # another worker has it, or nothing was due
    WAITING = "waiting"  # an event received before it is not judged yet: tried again shortly


class AccountState(StrEnum):
    """What `/readyz` and the dashboard say of an account."""

    OK = "ok"
    HELD = "held"


class PaymentStatus(StrEnum):
    """Whether a buyer got what they paid for (app/payments/service.py judges it from the event's actions)."""

    SERVED = "served"  # every access step succeeded
    PENDING = "pending"  # not judged yet, or within ACCESS_DEADLINE_MINUTES
    UNSERVED = "unserved"  # no rule matched, a step refused, or not served in time
    REFUNDED = "refunded"
    HANDLED = "handled"  # unserved or pending, and an operator said why it needs nothing more


class Priority(StrEnum):
    """Which work goes first under a backlog (claim order, and which requests the quota lets through when short)."""

    HIGH = "high"  # grants access (enroll, add_to_community): a buyer waits for it
    NORMAL = "normal"
    LOW = "low"  # the service's own traffic (reconcile, repeated hold probes)

    @property
    def rank(self) -> int:
        """Stored on the action (smaller first): a string would sort high < low < normal."""
        return _RANKS[self]

    @classmethod
    def of_rank(cls, rank: int) -> Priority:
        return next(p for p, r in _RANKS.items() if r == rank)


_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}
