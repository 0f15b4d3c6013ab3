"""Sample events in each provider's documented shape, trimmed to the fields rules usually read.

They match the example `rules.yaml` (a paid masterclass checkout, its refund, a form sign-up...), so that
`explain --sample` and `send` show a rule at work before any real provider is connected. Ids and times are fresh
on every call, so two sends are two events, not a redelivery.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from app.errors import NotFound


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    payload: dict[str, Any]
    # Headers that carry meaning besides the signature (Systeme.io sends the event type in one).
    headers: dict[str, str] = field(default_factory=dict)
    # Posted as application/x-www-form-urlencoded, as HTML forms and Gumroad do.
    form: bool = False

    @property
    def content_type(self) -> str:
        return "application/x-www-form-urlencoded" if self.form else "application/json"

    def body(self) -> bytes:
        return urlencode(_php_pairs(self.payload)).encode() if self.form else json.dumps(self.payload).encode()


def _php_pairs(value: dict[str, Any]) -> list[tuple[str, str]]:
    """Form fields the way PHP's `http_build_query` writes nested ones: `customer[email]`."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, item: Any) -> None:
        if isinstance(item, dict | list):
            for key, inner in item.items() if isinstance(item, dict) else enumerate(item):
                walk(f"{prefix}[{key}]" if prefix else str(key), inner)
        else:
            pairs.append((prefix, "" if item is None else str(item)))

    walk("", value)
    return pairs


def _id(prefix: str = "", size: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:size]


def _iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stripe(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _id("evt_"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }


def _stripe_samples() -> list[Sample]:
    # Stripe's API reference (docs.stripe.com/api/events/object, /checkout/sessions/object, /charges/object,
    # /subscriptions/object): an event wraps the object in `data.object`; amounts are integers in cents.
    checkout = {
        "id": _id("cs_test_"),
        "object": "checkout.session",
        "amount_total": 19900,
        "currency": "eur",
        "customer_details": {"email": "ada@yopmail.com", "name": "Ada Lovelace", "phone": "+44 20 7946 0000"},
        "metadata": {"product": "masterclass"},
        "mode": "payment",
        "payment_status": "paid",
        "status": "complete",
    }
    refund = {
        "id": _id("ch_"),
        "object": "charge",
        "amount": 19900,
        "amount_refunded": 19900,
        "currency": "eur",  # a charge always names it: without it a refund's amount is shown bare
        "refunded": True,
        "billing_details": {"email": "ada@yopmail.com", "name": "Ada Lovelace"},
    }
    subscription = {
        "id": _id("sub_"),
        "object": "subscription",
        "status": "canceled",
        "customer": _id("cus_", 14),
        # Set when the subscription is created (Checkout's subscription_data.metadata): Stripe sends no email here.
        "metadata": {"email": "ada@yopmail.com", "systeme_subscription_id": "4242"},
    }
    return [
        Sample("checkout", "a paid checkout of the masterclass", _stripe("checkout.session.completed", checkout)),
        Sample("refund", "a full refund of that charge", _stripe("charge.refunded", refund)),
        Sample(
            "subscription-deleted",
            "a subscription that ended",
            _stripe("customer.subscription.deleted", subscription),
        ),
    ]


def _systeme_samples() -> list[Sample]:
    # The captured real SALE_NEW delivery (../shared/systeme/webhooks.md, issue 18): `customer.fields` an object
    # keyed by slug, amounts in cents, `pricePlan.type` "one_shot" and `funnelStep.type` "offer-form" (the values
    # of a real one-off sale on an order form; not "one_time" and "order_form").
    sale = {
        "customer": {
            "id": 991,
            "contactId": 5501,
            "email": "grace@yopmail.com",
            "fields": {"first_name": "Grace", "surname": "Hopper"},
            "paymentProcessor": "stripe",
        },
        "funnelStep": {"id": 77, "name": "Order form", "type": "offer-form", "funnel": {"id": 12, "name": "VIP"}},
        "order": {"id": 4242, "createdAt": _iso(), "totalPrice": 49900},
        "pricePlan": {"id": 9, "name": "VIP", "type": "one_shot", "amount": 49900, "currency": "eur"},
    }
    # CONTACT_* payloads as webhooks.md documents them: `{"contact": Contact}` with `fields` a list of slug/value.
    contact = {
        "id": 5502,
        "email": "grace@yopmail.com",
        "fields": [{"slug": "first_name", "value": "Grace"}, {"slug": "surname", "value": "Hopper"}],
        "tags": [{"id": 31, "name": "VIP"}],
    }
    return [
        Sample("sale", "a new sale of the VIP price plan", sale, headers={"X-Webhook-Event": "SALE_NEW"}),
        Sample(
            "tag-added",
            "a tag added to a contact",
            {"contact": contact, "tag": {"id": 31, "name": "VIP"}},
            headers={"X-Webhook-Event": "CONTACT_TAG_ADDED"},
        ),
    ]


def _automation_samples() -> list[Sample]:
    # The "Call a webhook" step as public receivers of it parse it (webhooks.md): dotted type, `data`, `created_at`.
    enrolled = {
        "type": "contact.course.enrolled",
        "data": {"contact": {"email": "ada@yopmail.com"}, "course": {"id": 101, "name": "Masterclass"}},
        "created_at": _iso(),
    }
    return [Sample("enrolled", "an automation's 'Call a webhook' step after an enrolment", enrolled)]


def _standard_samples() -> list[Sample]:
    # The Standard Webhooks spec's example payload shape (standardwebhooks.com): `type`, `timestamp`, `data`.
    user = {
        "type": "user.created",
        "timestamp": _iso(),
        "data": {"email": "grace@yopmail.com", "first_name": "Grace", "last_name": "Hopper", "company": "Navy"},
    }
    return [Sample("user-created", "a partner's new user", user)]


def _paddle_samples() -> list[Sample]:
    # Paddle Billing's notification reference (developer.paddle.com, transaction.completed): `event_id`,
    # `event_type`, `occurred_at`, `notification_id`, the entity in `data`; totals are strings in the lowest unit.
    transaction = {
        "event_id": _id("evt_", 26),
        "event_type": "transaction.completed",
        "occurred_at": _iso(),
        "notification_id": _id("ntf_", 26),
        "data": {
            "id": _id("txn_", 26),
            "status": "completed",
            "customer_id": _id("ctm_", 26),
            "currency_code": "EUR",
            "details": {"totals": {"total": "19900", "currency_code": "EUR"}},
            "items": [{"price": {"id": "pri_01", "description": "Masterclass"}, "quantity": 1}],
            "custom_data": {"email": "ada@yopmail.com"},
        },
    }
    return [Sample("transaction", "a completed transaction", transaction)]


def _lemon_samples() -> list[Sample]:
    # Lemon Squeezy's webhook docs (docs.lemonsqueezy.com/help/webhooks): `meta.event_name`, `meta.custom_data`,
    # a JSON:API `data` with string `id` and `attributes` (`user_email`, `total` an integer in cents, `status`).
    order = {
        "meta": {"event_name": "order_created", "custom_data": {"customer_id": 25}},
        "data": {
            "type": "orders",
            "id": str(uuid.uuid4().int % 10**6),
            "attributes": {
                "user_email": "ada@yopmail.com",
                "user_name": "Ada Lovelace",
                "total": 19900,
                "status": "paid",
                "test_mode": True,
                "first_order_item": {"product_name": "Masterclass", "variant_name": "Default", "price": 19900},
                "updated_at": _iso(),
            },
        },
    }
    return [Sample("order", "a paid order", order, headers={"X-Event-Name": "order_created"})]


def _typeform_samples() -> list[Sample]:
    # Typeform's webhook payload reference (typeform.com/developers/webhooks/example-payload).
    response = {
        "event_id": _id().upper(),
        "event_type": "form_response",
        "form_response": {
            "form_id": "lT4Z3j",
            "submitted_at": _iso(),
            "definition": {"id": "lT4Z3j", "title": "Webinar sign-up"},
            "answers": [
                {"type": "email", "email": "ada@yopmail.com", "field": {"id": "Aux1", "type": "email", "ref": "email"}},
                {"type": "text", "text": "Ada Lovelace", "field": {"id": "Aux2", "type": "short_text", "ref": "name"}},
            ],
        },
    }
    return [Sample("response", "a form response", response)]


def _tally_samples() -> list[Sample]:
    # Tally's webhook docs (tally.so/help/webhooks): `eventId`, `eventType` FORM_RESPONSE, `data.fields[]`.
    response = {
        "eventId": str(uuid.uuid4()),
        "eventType": "FORM_RESPONSE",
        "createdAt": _iso(),
        "data": {
            "responseId": _id(size=6),
            "formId": "VwbNEw",
            "fields": [
                {"key": "question_email", "label": "Email", "type": "INPUT_EMAIL", "value": "ada@yopmail.com"},
                {"key": "question_name", "label": "Name", "type": "INPUT_TEXT", "value": "Ada Lovelace"},
            ],
        },
    }
    return [Sample("response", "a form response", response)]


def _gumroad_samples() -> list[Sample]:
    # Gumroad's Ping reference (gumroad.com/ping, help article 105): a form post of strings, `price` in cents,
    # `refunded` and `test` as "true"/"false"; a refund ping repeats the sale with `resource_name: refund`.
    sale = {
        "seller_id": "your-seller-id",
        "product_id": "32-nPAicqbLj8B_WswVlMw==",
        "product_name": "Masterclass",
        "permalink": "masterclass",
        "email": "ada@yopmail.com",
        "full_name": "Ada Lovelace",
        "price": "19900",
        "currency": "usd",
        "quantity": "1",
        "sale_id": f"{_id(size=8)}==",
        "sale_timestamp": _iso(),
        "refunded": "false",
        "test": "true",
    }
    refund = {**sale, "resource_name": "refund", "refunded": "true"}
    return [
        Sample("sale", "a sale ping", sale, form=True),
        Sample("refund", "a refund ping", refund, form=True),
    ]


def _form_samples() -> list[Sample]:
    signup = {"email": "ada@yopmail.com", "name": "Ada Lovelace"}
    return [Sample("signup", "an HTML form post with an email and a full name", signup, form=True)]


def _json_samples() -> list[Sample]:
    event = {"id": str(uuid.uuid4()), "type": "lead.created", "event": "lead.created", "email": "ada@yopmail.com"}
    return [Sample("event", "a JSON object with an id, a type and an email", event)]


_CATALOG: dict[str, Callable[[], list[Sample]]] = {
    "stripe": _stripe_samples,
    "systeme": _systeme_samples,
    "systeme-automation": _automation_samples,
    "standard-webhooks": _standard_samples,
    "paddle": _paddle_samples,
    "lemonsqueezy": _lemon_samples,
    "typeform": _typeform_samples,
    "tally": _tally_samples,
    "gumroad": _gumroad_samples,
    "form": _form_samples,
    "json": _json_samples,
}


def samples_for(source_type: str) -> list[Sample]:
    """The samples of a source type, with fresh ids and times."""
    from app.samples import shops

    build = _CATALOG.get(source_type) or {
        "shopify": shops.shopify_samples,
        "woocommerce": shops.woocommerce_samples,
        "thrivecart": shops.thrivecart_samples,
        "calendly": shops.calendly_samples,
    }.get(source_type)
    return build() if build else []


def find_sample(source_type: str, name: str) -> Sample:
    """One sample by name; NotFound names the ones there are."""
    found = {s.name: s for s in samples_for(source_type)}
    if name not in found:
        known = ", ".join(found) or "none"
        raise NotFound(f"no sample {name!r} for a '{source_type}' source (samples: {known})")
    return found[name]
