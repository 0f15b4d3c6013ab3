"""Payments of sources whose payload has no shape of its own (Standard Webhooks, `json`): read as the rules file's
`payment:` says, with the expressions of rules' `if`.

An expression that reads a missing value, or fails over this payload, gives no value (the amount or buyer is then
unknown), never an error: the listing shows every payment it can, as the rules engine judges every event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.payments.recognize import READERS, Kind, Payment, currency_of, email_of, payment_of, text_of
from app.rules.source_config import PaymentConfig, SourceConfig
from app.rules.templates import ListNode, Missing, Node, compile_expression, evaluate


def _value(source: str | None, context: Mapping[str, Any]) -> Any:
    if source is None:
        return None
    found = evaluate(compile_expression(source), context)
    value = found.value
    if found.error is not None or isinstance(value, Missing | Node | ListNode):
        return None
    return value


def configured_payment(config: PaymentConfig, event_type: str | None, payload: Mapping[str, Any]) -> Payment | None:
    """The payment or refund this event is by its source's `payment:`, or None."""
    context = {"event": Node(payload, "event"), "event_type": event_type}
    kind: Kind
    if config.refund is not None and _value(config.refund, context):
        kind = "refund"
    elif _value(config.when, context):
        kind = "payment"
    else:
        return None
    return Payment(
        kind,
        email_of(_value(config.email, context)),
        text_of(_value(config.amount, context)),
        currency_of(_value(config.currency, context)),
        text_of(_value(config.product, context)),
        "minor" if config.minor_units else "major",
        text_of(_value(config.order, context)),
    )


def recognizes(config: SourceConfig) -> bool:
    """Whether events of this source can be payments: a type that sends them, or a `payment:` that says which."""
    return config.payment is not None or config.type in READERS


def payment_in(config: SourceConfig, event_type: str | None, payload: Mapping[str, Any]) -> Payment | None:
    """The payment or refund an event of this source is, by its `payment:` or else its type, or None."""
    if config.payment is not None:
        return configured_payment(config.payment, event_type, payload)
    return payment_of(config.type, event_type, dict(payload))
