"""Source types: each turns a raw delivery into an `IncomingEvent`, or refuses it with a 4xx."""

from __future__ import annotations

from typing import Protocol

from app.rules.schema import SourceConfig
from app.sources import calendly, forms, generic, payments, shops, standard, stripe, systeme
from app.sources.base import Delivery, IncomingEvent


class Parser(Protocol):
    def __call__(
        self, config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True
    ) -> IncomingEvent: ...


PARSERS: dict[str, Parser] = {
    "stripe": stripe.parse,
    "standard-webhooks": standard.parse,
    "systeme": systeme.parse,
    "systeme-automation": systeme.parse_automation,
    "paddle": payments.parse_paddle,
    "lemonsqueezy": payments.parse_lemonsqueezy,
    "gumroad": payments.parse_gumroad,
    "shopify": shops.parse_shopify,
    "woocommerce": shops.parse_woocommerce,
    "thrivecart": shops.parse_thrivecart,
    "calendly": calendly.parse,
    "typeform": forms.parse_typeform,
    "tally": forms.parse_tally,
    "form": forms.parse_form,
    "json": generic.parse_json,
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
        "paddle-signature",
        "x-signature",
        "typeform-signature",
        "tally-signature",
        "x-shopify-hmac-sha256",
        "x-wc-webhook-signature",
        "calendly-webhook-signature",
    }
)

__all__ = ["PARSERS", "SECRET_HEADERS", "Delivery", "IncomingEvent", "parse_delivery"]


def parse_delivery(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    """The event in a delivery; `verify=False` skips the signature or token (explain and previews only)."""
    return PARSERS[config.type](config, delivery, now, verify=verify)
