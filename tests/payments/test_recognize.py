"""Payments and refunds of every source type that sends them, read from the shipped real-shaped samples."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from app.payments.recognize import Payment, payment_of
from app.rules.schema import SourceConfig
from app.samples.catalog import find_sample
from app.sources import Delivery, parse_delivery


def recognised(source_type: str, sample: str) -> Payment | None:
    found = find_sample(source_type, sample)
    headers = {"content-type": found.content_type, **{k.lower(): v for k, v in found.headers.items()}}
    body = found.body()
    form = dict(parse_qsl(body.decode())) if found.form else None
    secret = "s" * 32
    if source_type == "thrivecart" and form is not None:
        form["thrivecart_secret"] = secret  # ThriveCart posts its secret word among the fields
    config = SourceConfig(type=source_type, secret=(secret,), token=secret)
    event = parse_delivery(config, Delivery(headers=headers, body=body, query={}, form=form), 0.0, verify=False)
    return payment_of(source_type, event.type, event.payload)


@pytest.mark.parametrize(
    ("source_type", "sample", "kind", "amount", "currency", "product"),
    [
        ("stripe", "checkout", "payment", "199.00", "EUR", "masterclass"),
        ("stripe", "refund", "refund", "199.00", "EUR", None),
        ("paddle", "transaction", "payment", "199.00", "EUR", None),
        ("gumroad", "sale", "payment", "199.00", "USD", "masterclass"),
        ("gumroad", "refund", "refund", "199.00", "USD", "masterclass"),
        ("shopify", "order-paid", "payment", "199.00", "USD", "MASTERCLASS"),
        ("thrivecart", "order-success", "payment", "199.00", "USD", "Masterclass"),
        ("systeme", "sale", "payment", "499.00", "EUR", "VIP"),
    ],
)
def test_payments_of_every_source_type_with_amount_currency_and_product(
    source_type, sample, kind, amount, currency, product
):
    found = recognised(source_type, sample)
    assert found is not None
    assert (found.kind, found.amount, found.currency) == (kind, amount, currency)
    assert found.email is not None and "@" in found.email
    if product is not None:
        assert found.product == product


def test_lemon_squeezy_and_woocommerce_orders_in_their_paid_statuses():
    lemon = recognised("lemonsqueezy", "order")
    woo = recognised("woocommerce", "order-created")
    assert lemon is not None and (lemon.kind, lemon.amount_raw, lemon.unit) == ("payment", "19900", "minor")
    assert woo is not None and (woo.kind, woo.amount, woo.currency, woo.unit) == ("payment", "199.00", "USD", "major")


def test_a_stripe_refund_and_what_is_not_a_payment():
    refund = recognised("stripe", "refund")
    assert refund is not None and refund.kind == "refund" and refund.amount_raw == "19900"
    assert recognised("stripe", "subscription-deleted") is None
    assert recognised("form", "signup") is None
    unpaid = {"data": {"object": {"payment_status": "unpaid", "amount_total": 100, "currency": "eur"}}}
    assert payment_of("stripe", "checkout.session.completed", unpaid) is None
    assert payment_of("stripe", "checkout.session.async_payment_succeeded", unpaid) is not None


@pytest.mark.parametrize(
    ("raw", "currency", "unit", "shown"),
    [
        ("19900", "eur", "minor", "199.00"),
        ("5000", "JPY", "minor", "5000"),
        ("12345", "KWD", "minor", "12.345"),
        ("199.5", "USD", "major", "199.50"),
        ("not a number", "USD", "major", None),
        ("NaN", "EUR", "minor", None),
        ("-Infinity", "EUR", "major", None),
        ("1e999999", "EUR", "minor", None),  # a million digits if printed
        ("0.5e-40", "USD", "major", None),
    ],
)
def test_amounts_are_shown_in_major_units_by_the_currency_s_exponent(raw, currency, unit, shown):
    assert Payment("payment", None, raw, currency.upper(), None, unit).amount == shown


def test_shopify_and_woocommerce_refunds_link_by_order():
    refund = payment_of(
        "shopify",
        "refunds/create",
        {"order_id": 820982911946154508, "transactions": [{"amount": "199.00", "currency": "USD", "kind": "refund"}]},
    )
    assert refund is not None and (refund.kind, refund.order, refund.amount) == (
        "refund",
        "820982911946154508",
        "199.00",
    )
    woo = payment_of("woocommerce", "order.updated", {"id": 93, "status": "refunded", "total": "199.00"})
    assert woo is not None and (woo.kind, woo.order) == ("refund", "93")
    assert payment_of("woocommerce", "order.updated", {"id": 93, "status": "pending", "total": "199.00"}) is None


def test_the_shopify_refund_sample_refunds_the_order_sample_sent_before_it():
    # Two `send` commands, each building its samples afresh: the refund names the order the first one paid.
    paid, refund = recognised("shopify", "order-paid"), recognised("shopify", "refund")
    assert paid is not None and refund is not None and refund.kind == "refund"
    assert paid.order is not None and refund.order == paid.order
