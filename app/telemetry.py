"""Prometheus metrics of the API process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "systeme_flow_events_received",
    "Deliveries received, by source and outcome (stored, duplicate, rejected, dropped, ping).",
    ["source", "outcome"],
    registry=REGISTRY,
)
SIGNATURE_FAILURES = Counter(
    "systeme_flow_signature_failures",
    "Deliveries refused with 401, by source and reason (missing, malformed, stale, mismatch, token, seller).",
    ["source", "reason"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "systeme_flow_rate_limited",
    "Posts refused with 429 by an unsigned source's rate limit.",
    ["source"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    "systeme_flow_ingest_seconds",
    "Time from request to answer on POST /hooks/{source}.",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
# Read from the database at each scrape, so they cover every worker process.
ACTIONS = Gauge(
    "systeme_flow_actions", "Actions by account, kind and status.", ["account", "kind", "status"], registry=REGISTRY
)
ACCOUNT_HELD = Gauge(
    "systeme_flow_account_held",
    "1 while the Systeme.io account is held (it refused our key or connection), else 0.",
    ["account"],
    registry=REGISTRY,
)
EVENTS_UNPLANNED = Gauge(
    "systeme_flow_events_unplanned",
    "Events stored but not judged by the rules yet (planned right after their answer; a sweep plans leftovers)",
    registry=REGISTRY,
)
PAYMENTS_UNSERVED = Gauge(
    "systeme_flow_payments_unserved",
    "Payments of the last 7 days whose buyer has no access: no rule matched, a step refused, or past the deadline.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "systeme_flow_queue_depth", "Actions due now: pending, or scheduled and their time has come.", registry=REGISTRY
)
API_CALLS = Gauge(
    "systeme_flow_api_calls_last_hour",
    "Systeme.io requests in the last hour, by answer status.",
    ["status"],
    registry=REGISTRY,
)
RETRIES = Gauge(
    "systeme_flow_retried_actions_last_hour",
    "Actions that made a second or later attempt in the last hour.",
    registry=REGISTRY,
)
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AttemptLatency:
    """Histogram of action attempt durations (time spent calling Systeme.io) over the last hour.

    Attempts run in worker processes, so the figures come from the database at each scrape (see /metrics), not
    from this process's memory.
    """

    def __init__(self) -> None:
        self.durations: list[float] = []

    def collect(self) -> Iterator[HistogramMetricFamily]:
        buckets = [(str(bound), float(sum(1 for d in self.durations if d <= bound))) for bound in ATTEMPT_BUCKETS]
        buckets.append(("+Inf", float(len(self.durations))))
        yield HistogramMetricFamily(
            "systeme_flow_action_attempt_seconds",
            "Time action attempts spent calling Systeme.io, last hour.",
            buckets=buckets,
            sum_value=sum(self.durations),
        )


ACTION_LATENCY = AttemptLatency()
REGISTRY.register(ACTION_LATENCY)
QUOTA_REMAINING = Gauge(
    "systeme_flow_rate_limit_remaining",
    "Requests left in the current Systeme.io quota window (shared budget), by account.",
    ["account"],
    registry=REGISTRY,
)


class MirrorMisses:
    """`systeme_flow_mirror_misses_total{account}`: contacts a complete mirror did not know and the account had (the
    create answered "already used"). Counted by every worker in the database; read from there at each scrape."""

    def __init__(self) -> None:
        self.by_account: dict[str, int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "systeme_flow_mirror_misses",
            "Contacts a complete mirror did not know that the account had, since the mirror's last mode change.",
            labels=["account"],
        )
        for account, count in sorted(self.by_account.items()):
            family.add_metric([account], float(count))
        yield family


MIRROR_MISSES = MirrorMisses()
REGISTRY.register(MIRROR_MISSES)
