"""Source types: each turns a raw delivery into an `IncomingEvent`, or refuses it with a 4xx."""

from __future__ import annotations

from collections.abc import Callable

from app.rules.schema import SourceConfig
from app.sources import form, standard, stripe, systeme
from app.sources.base import Delivery, IncomingEvent

Parser = Callable[[SourceConfig, Delivery, float], IncomingEvent]

PARSERS: dict[str, Parser] = {
    "stripe": stripe.parse,
    "standard-webhooks": standard.parse,
    "systeme": systeme.parse,
    "form": form.parse,
}

# Headers that authenticate a delivery: never stored, never shown.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "x-webhook-token",
        "stripe-signature",
        "webhook-signature",
        "x-webhook-signature",
    }
)

__all__ = ["PARSERS", "SECRET_HEADERS", "Delivery", "IncomingEvent", "parse_delivery"]


def parse_delivery(config: SourceConfig, delivery: Delivery, now: float) -> IncomingEvent:
    return PARSERS[config.type](config, delivery, now)
