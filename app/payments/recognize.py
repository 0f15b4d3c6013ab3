"""Which events are payments and refunds, read from each provider's own payload: buyer, amount, product.

Pure functions over a stored payload. Amounts are kept as the provider sends them (`amount_raw`, in its
`unit`) and converted once for display: Stripe, Paddle, Lemon Squeezy, Gumroad, ThriveCart and Systeme.io send
minor units (cents), Shopify and WooCommerce decimal strings in major units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["payment", "refund"]
Unit = Literal["minor", "major"]
# ISO 4217 currencies with no minor unit (Stripe's list of zero-decimal currencies), and those with three.
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
# Digits an amount may have before or after its point: more than any real price, far less than a hostile one.
MAX_DIGITS = 18
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())


@dataclass(frozen=True)
class Payment:
    kind: Kind
    email: str | None
    amount_raw: str | None
    currency: str | None
    product: str | None
    unit: Unit
    # The provider's order or payment id, when it sends one: links a refund to its payment.
    order: str | None = None

    @property
    def amount(self) -> str | None:
        """The amount in major units, as a seller reads it (`199.00`)."""
        if self.amount_raw is None:
            return None
        try:
            value = Decimal(self.amount_raw)
        except InvalidOperation:
            return None
        # NaN, infinities and exponents past any price (`1e999999` would print a million digits) are not amounts.
        if not value.is_finite() or abs(value.adjusted()) > MAX_DIGITS:
            return None
        currency = (self.currency or "").upper()
        places = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
        if self.unit == "minor":
            value = value.scaleb(-places)
        return f"{value:.{places}f}"


def _at(payload: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(payload, dict) and isinstance(key, str):
            payload = payload.get(key)
        elif isinstance(payload, list) and isinstance(key, int) and -len(payload) <= key < len(payload):
            payload = payload[key]
        else:
            return None
    return payload


def _text(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | str) and str(value).strip():
            return str(value).strip()
    return None


def _email(*values: Any) -> str | None:
    found = _text(*values)
    return found.lower() if found and "@" in found else None


def _currency(*values: Any) -> str | None:
    found = _text(*values)
    return found.upper() if found else None


# For sources read by the rules file's `payment:` (app/payments/configured.py): the same readings of a value.
text_of, email_of, currency_of = _text, _email, _currency

Reader = Callable[[str | None, dict[str, Any]], Payment | None]


def _stripe(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    o = _at(p, "data", "object") or {}
    if event_type == "checkout.session.completed" and o.get("payment_status") != "paid":
        return None  # delayed methods: paid only with async_payment_succeeded
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        product = _text(_at(o, "metadata", "product"), _at(o, "metadata", "product_id"), o.get("payment_link"))
        email = _email(_at(o, "customer_details", "email"), o.get("customer_email"))
        order = _text(o.get("payment_intent"), o.get("invoice"), o.get("id"))
        return Payment(
            "payment", email, _text(o.get("amount_total")), _currency(o.get("currency")), product, "minor", order
        )
    if event_type == "invoice.paid":
        line = _at(o, "lines", "data", 0) or {}
        product = _text(
            _at(line, "price", "product"), _at(line, "pricing", "price_details", "product"), line.get("description")
        )
        email = _email(o.get("customer_email"))
        return Payment(
            "payment",
            email,
            _text(o.get("amount_paid")),
            _currency(o.get("currency")),
            product,
            "minor",
            _text(o.get("id")),
        )
    if event_type == "charge.refunded":
        email = _email(_at(o, "billing_details", "email"), o.get("receipt_email"))
        amount = _text(o.get("amount_refunded"), o.get("amount"))
        order = _text(o.get("payment_intent"), o.get("invoice"))
        return Payment(
            "refund", email, amount, _currency(o.get("currency")), _text(_at(o, "metadata", "product")), "minor", order
        )
    return None


def _paddle(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    d = p.get("data") or {}
    if event_type == "transaction.completed":
        totals = _at(d, "details", "totals") or {}
        product = _text(_at(d, "items", 0, "price", "product_id"), _at(d, "items", 0, "price", "description"))
        email = _email(_at(d, "custom_data", "email"), _at(d, "customer", "email"))
        amount = _text(totals.get("grand_total"), totals.get("total"))
        currency = _currency(d.get("currency_code"), totals.get("currency_code"))
        return Payment("payment", email, amount, currency, product, "minor", _text(d.get("id")))
    if event_type in ("adjustment.created", "adjustment.updated") and d.get("action") == "refund":
        if d.get("status") != "approved":
            return None
        amount = _text(_at(d, "totals", "total"))
        currency = _currency(d.get("currency_code"), _at(d, "totals", "currency_code"))
        return Payment("refund", None, amount, currency, None, "minor", _text(d.get("transaction_id")))
    return None


def _lemonsqueezy(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    a = _at(p, "data", "attributes") or {}
    product = _text(_at(a, "first_order_item", "product_name"), _at(a, "first_order_item", "variant_name"))
    order = _text(_at(p, "data", "id"))
    if event_type == "order_created" and a.get("status") == "paid":
        return Payment(
            "payment",
            _email(a.get("user_email")),
            _text(a.get("total")),
            _currency(a.get("currency")),
            product,
            "minor",
            order,
        )
    if event_type == "order_refunded":
        amount = _text(a.get("refunded_amount"), a.get("total"))
        return Payment(
            "refund", _email(a.get("user_email")), amount, _currency(a.get("currency")), product, "minor", order
        )
    return None


def _gumroad(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    refunded = str(p.get("refunded", "")).lower() == "true"
    kind: Kind = "refund" if event_type == "refund" or refunded else "payment"
    if event_type not in (None, "sale", "refund"):
        return None
    product = _text(p.get("permalink"), p.get("product_name"), p.get("product_id"))
    return Payment(
        kind,
        _email(p.get("email")),
        _text(p.get("price")),
        _currency(p.get("currency")),
        product,
        "minor",
        _text(p.get("sale_id")),
    )


def _shopify(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    product = _text(_at(p, "line_items", 0, "sku"), _at(p, "line_items", 0, "title"), _at(p, "line_items", 0, "name"))
    email = _email(p.get("email"), p.get("contact_email"), _at(p, "customer", "email"))
    paid = event_type == "orders/paid" or (event_type == "orders/create" and p.get("financial_status") == "paid")
    refunded = event_type == "orders/updated" and p.get("financial_status") == "refunded"
    if paid or refunded:
        kind: Kind = "payment" if paid else "refund"
        total = _text(p.get("total_price"))
        return Payment(kind, email, total, _currency(p.get("currency")), product, "major", _text(p.get("id")))
    if event_type == "refunds/create":
        transactions = [t for t in p.get("transactions") or [] if isinstance(t, dict)]
        amount = sum((Decimal(str(t.get("amount") or 0)) for t in transactions), Decimal(0)) if transactions else None
        currency = _currency(_at(transactions, 0, "currency"))
        return Payment(
            "refund",
            None,
            str(amount) if amount is not None else None,
            currency,
            None,
            "major",
            _text(p.get("order_id")),
        )
    return None


WOO_PAID = frozenset({"processing", "completed"})


def _woocommerce(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    if event_type not in ("order.created", "order.updated"):
        return None
    status = p.get("status")
    kind: Kind | None = "payment" if status in WOO_PAID else "refund" if status == "refunded" else None
    if kind is None:
        return None
    product = _text(_at(p, "line_items", 0, "sku"), _at(p, "line_items", 0, "name"))
    email = _email(_at(p, "billing", "email"))
    return Payment(
        kind, email, _text(p.get("total")), _currency(p.get("currency")), product, "major", _text(p.get("id"))
    )


def _thrivecart(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    kinds: dict[str | None, Kind] = {"order.success": "payment", "order.refund": "refund"}
    kind = kinds.get(event_type)
    if kind is None:
        return None
    product = _text(p.get("base_product_name"), p.get("base_product"))
    email = _email(_at(p, "customer", "email"), p.get("customer_email"))
    amount = _text(_at(p, "order", "total"))
    return Payment(kind, email, amount, _currency(p.get("currency")), product, "minor", _text(p.get("order_id")))


def _systeme(event_type: str | None, p: dict[str, Any]) -> Payment | None:
    kinds: dict[str | None, Kind] = {"SALE_NEW": "payment", "SALE_CANCELED": "refund"}
    kind = kinds.get(event_type)
    if kind is None:
        return None
    plan = p.get("pricePlan") or {}
    amount = _text(plan.get("amount"), _at(p, "order", "totalPrice"))
    product = _text(plan.get("name"), plan.get("id"))
    email = _email(_at(p, "customer", "email"))
    return Payment(kind, email, amount, _currency(plan.get("currency")), product, "minor", _text(_at(p, "order", "id")))


READERS: dict[str, Reader] = {
    "stripe": _stripe,
    "paddle": _paddle,
    "lemonsqueezy": _lemonsqueezy,
    "gumroad": _gumroad,
    "shopify": _shopify,
    "woocommerce": _woocommerce,
    "thrivecart": _thrivecart,
    "systeme": _systeme,
}


def payment_of(source_type: str, event_type: str | None, payload: dict[str, Any]) -> Payment | None:
    """The payment or refund this event is, or None (not a payment, or a source type that sends none)."""
    reader = READERS.get(source_type)
    return reader(event_type, payload) if reader else None
