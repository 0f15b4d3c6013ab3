"""One entry of the rules file's `sources:`: where events come from and how they prove it (app/rules/schema.py
holds the rest of the file's models)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from app.rules.frozen import Frozen

SourceType = Literal[
    "stripe",
    "systeme",
    "systeme-automation",
    "standard-webhooks",
    "paddle",
    "lemonsqueezy",
    "typeform",
    "tally",
    "gumroad",
    "shopify",
    "woocommerce",
    "thrivecart",
    "calendly",
    "form",
    "json",
]
# Every delivery carries proof made with `secret`: a signature, or (ThriveCart) the account's secret word, a
# shared secret too long to guess whose sender posts in bursts a per-address rate limit would refuse.
SIGNED_TYPES = frozenset(
    {
        "stripe",
        "systeme",
        "standard-webhooks",
        "paddle",
        "lemonsqueezy",
        "typeform",
        "shopify",
        "woocommerce",
        "thrivecart",
        "calendly",
    }
)
TOKEN_TYPES = frozenset({"form", "systeme-automation", "gumroad"})
# Source types whose payments are told by the rules file (`payment:`), having no payload shape of their own.
PAYMENT_CONFIG_TYPES = frozenset({"standard-webhooks", "json"})
# The expressions of `payment:`, in the order a reader writes them.
PAYMENT_EXPRESSIONS = ("when", "refund", "email", "amount", "currency", "product", "order")


class PaymentConfig(Frozen):
    """`payment:` of a standard-webhooks or json source: which of its events are payments and refunds, and where
    the buyer, amount, currency and product are. Each value is an expression over `event`, as `if` is."""

    when: str
    # A refund is told first: an event this expression is true for is a refund, whatever `when` says.
    refund: str | None = None
    email: str
    amount: str
    currency: str
    product: str | None = None
    # The provider's order or payment id: links a refund to its payment (else the buyer and product do).
    order: str | None = None
    # The amount is in cents (minor units), as Stripe sends it; by default it is in major units (`199.00`).
    minor_units: bool = False

    @field_validator("when", "refund", mode="before")
    @classmethod
    def _plain_boolean(cls, value: Any) -> Any:
        # `when: true` parses as a YAML boolean; it means the expression `true`.
        return str(value).lower() if isinstance(value, bool) else value


class SourceConfig(Frozen):
    """One entry of `sources:`: where events come from and how they prove it."""

    type: SourceType
    # The account the rules of this source act on, unless a rule names its own.
    account: str | None = None
    secret: tuple[str, ...] = ()
    token: str | None = None
    tolerance: int = Field(300, ge=1)
    # Unsigned sources only: posts per minute per client address, or "unlimited".
    rate_limit: str = "60/minute"
    # form
    redirect: str | None = None
    honeypot: str | None = None
    id_field: str | None = None
    # gumroad
    seller_id: str | None = None
    # Addresses (or networks, `203.0.113.0/24`) a delivery must come from, checked beside the token or signature:
    # for senders that publish theirs, such as Systeme.io's automation "Call a webhook" step.
    allow_ips: tuple[str, ...] = ()
    # json: where the type is, and how the sender signs
    type_field: str | None = None
    header: str | None = None
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str | None = None
    signed: str = "body"
    # standard-webhooks and json: which events are payments (app/payments/configured.py)
    payment: PaymentConfig | None = None

    @field_validator("secret", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("allow_ips", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        values = (value,) if isinstance(value, str) else value
        if isinstance(values, list | tuple):
            for item in values:
                try:
                    ipaddress.ip_network(str(item).strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(
                        f"{item!r} is not an IP address or network (like 203.0.113.7 or 203.0.113.0/24)"
                    ) from exc
            return tuple(str(item).strip() for item in values)
        return values

    @property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.allow_ips)

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value != "unlimited" and not re.fullmatch(r"[1-9][0-9]*/(second|minute|hour)", value):
            raise ValueError("use N/second, N/minute, N/hour or unlimited")
        return value

    @field_validator("signed")
    @classmethod
    def _signed_template(cls, value: str) -> str:
        if value == "body":
            return value
        parts = re.findall(r"\{([^{}]*)\}", value)
        if "body" not in parts or value.count("{") != len(parts) or value.count("}") != len(parts):
            raise ValueError("`signed` is `body` or a template with {body} and {header:NAME} parts")
        if any(p != "body" and not p.startswith("header:") for p in parts):
            raise ValueError("`signed` may only use {body} and {header:NAME}")
        return value

    @property
    def signed_by_secret(self) -> bool:
        return self.type in SIGNED_TYPES or (self.type in ("json", "tally") and bool(self.secret))

    @property
    def rate(self) -> tuple[int, int] | None:
        """(posts, window seconds) for an unsigned source, None when unlimited or signed."""
        if self.signed_by_secret or self.rate_limit == "unlimited":
            return None
        count, unit = self.rate_limit.split("/")
        return int(count), {"second": 1, "minute": 60, "hour": 3600}[unit]

    @model_validator(mode="after")
    def _credentials(self) -> SourceConfig:
        # An empty secret verifies against an empty key, which anyone can forge.
        has_secret = any(s.strip() for s in self.secret)
        has_token = bool((self.token or "").strip())
        if self.type in SIGNED_TYPES and not has_secret:
            raise ValueError(f"a '{self.type}' source needs a non-empty `secret`")
        if self.type in TOKEN_TYPES and not has_token:
            raise ValueError(f"a '{self.type}' source needs a non-empty `token` (sent as ?token= or X-Webhook-Token)")
        if self.type in ("json", "tally") and not (has_secret or has_token):
            raise ValueError(f"a '{self.type}' source needs a `secret` (signed) or a `token`")
        if self.type == "json" and has_secret and not self.header:
            raise ValueError("a signed 'json' source needs `header`, the header that carries the signature")
        for key, allowed in (
            ("redirect", {"form"}),
            ("honeypot", {"form"}),
            ("seller_id", {"gumroad"}),
            ("payment", PAYMENT_CONFIG_TYPES),
        ):
            if getattr(self, key) is not None and self.type not in allowed:
                raise ValueError(f"`{key}` only applies to {' and '.join(sorted(allowed))} sources")
        return self
