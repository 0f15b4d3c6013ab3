"""Prometheus metrics of the API process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "systeme_flow_events_received",
    "Deliveries received, by source and outcome (stored, duplicate, rejected, dropped).",
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
