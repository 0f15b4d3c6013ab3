"""Builders for test data: signed deliveries in each provider's documented scheme, rules files, payloads, and
events stored and planned through the production path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import rules_environment
from app.rules.engine import RuleOutcome
from app.rules.loader import parse_rules
from app.rules.schema import DEFAULT_ACCOUNT
from app.store.events import NewEvent, record_events
from app.store.models import actions
from app.store.plans import Unplanned, record_plans
from app.store.storable import storable_time

STRIPE_SECRET = "whsec_test_stripe_secret"
SYSTEME_SECRET = "systeme-secret"
PARTNER_SECRET = "whsec_" + base64.b64encode(b"partner-key-0123456789").decode()
FORM_TOKEN = "form-token-abc123"

RULES = f"""
version: 1
sources:
  stripe:  {{ type: stripe, secret: "{STRIPE_SECRET}" }}
  systeme: {{ type: systeme, secret: "{SYSTEME_SECRET}" }}
  partner: {{ type: standard-webhooks, secret: "{PARTNER_SECRET}" }}
  signup:  {{ type: form, token: "{FORM_TOKEN}", redirect: "https://example.com/thanks" }}
  contact: {{ type: form, token: "{FORM_TOKEN}" }}
rules:
  - id: masterclass-purchase
    on: [stripe/checkout.session.completed]
    if: event.data.object.payment_status == "paid"
    contact:
      email: "{{{{ event.data.object.customer_details.email }}}}"
      first_name: "{{{{ event.data.object.customer_details.name }}}}"
      fields: {{ phone_number: "{{{{ event.data.object.customer_details.phone }}}}" }}
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101, access: full_access }}
      - add_to_community: {{ community: Insiders }}
  - id: refund-revokes-access
    on: stripe/charge.refunded
    if: event.data.object.refunded
    contact: {{ email: "{{{{ event.data.object.billing_details.email }}}}" }}
    actions:
      - untag: Masterclass buyer
      - unenroll: {{ course: 101 }}
      - remove_from_community: {{ community: 7 }}
  - id: subscription-ended
    on: stripe/customer.subscription.deleted
    actions:
      - cancel_subscription:
          subscription: "{{{{ event.data.object.metadata.systeme_subscription_id }}}}"
          when: Now
  - id: partner-signup
    on: partner/user.created
    contact: {{ email: "{{{{ event.data.email }}}}", surname: "{{{{ event.data.last_name }}}}" }}
    actions:
      - tag: {{ name: Partner lead }}
      - update_contact: {{ fields: {{ company_name: "{{{{ event.data.company }}}}" }} }}
  - id: newsletter
    on: signup
    contact: {{ email: "{{{{ event.email }}}}", first_name: "{{{{ event.first_name }}}}" }}
    actions: [ {{ tag: Newsletter }} ]
  - id: vip-sale
    on: systeme/SALE_NEW
    if: event.pricePlan.name == "VIP"
    contact: {{ email: "{{{{ event.customer.email }}}}" }}
    actions: [ {{ tag: VIP }} ]
"""


def write_rules(folder: Path, text: str = RULES) -> Path:
    path = folder / "rules.yaml"
    path.write_text(text)
    return path


def stripe_checkout(
    email: str = "ada@yopmail.com", *, event_id: str | None = None, paid: bool = True, created: int | None = None
) -> dict[str, Any]:
    """A `checkout.session.completed` event as Stripe sends it (trimmed to the fields that matter)."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created or int(time.time()),
        "type": "checkout.session.completed",
        "livemode": False,
        "data": {
            "object": {
                "id": "cs_test_a1b2c3",
                "object": "checkout.session",
                "amount_total": 19900,
                "currency": "eur",
                "customer_details": {"email": email, "name": "Ada Lovelace", "phone": None},
                "metadata": {"product": "masterclass"},
                "mode": "payment",
                "payment_status": "paid" if paid else "unpaid",
                "status": "complete",
            }
        },
    }


def stripe_refund(email: str = "ada@yopmail.com", *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "created": int(time.time()),
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_3abc",
                "object": "charge",
                "refunded": True,
                "amount_refunded": 19900,
                "billing_details": {"email": email, "name": "Ada Lovelace"},
            }
        },
    }


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, *, timestamp: int | None = None) -> dict[str, str]:
    t = timestamp if timestamp is not None else int(time.time())
    signature = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={signature}"}


def standard_headers(
    body: bytes, secret: str = PARTNER_SECRET, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    t = str(timestamp if timestamp is not None else int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": t,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def php_json(value: Any) -> bytes:
    """JSON the way Systeme.io's PHP writes it: compact, `/` escaped, non-ASCII as \\uXXXX."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def systeme_sale(email: str = "vip@yopmail.com", plan: str = "VIP") -> dict[str, Any]:
    return {
        "customer": {
            "id": 991,
            "contactId": 5501,
            "email": email,
            "fields": {"first_name": "Zoë", "surname": "Müller"},
            "paymentProcessor": "stripe",
            "sourceUrl": "https://shop.example.com/funnel/vip-offer",
        },
        "coupon": None,
        "funnelStep": {"id": 77, "name": "Order form", "type": "offer-form", "funnel": {"id": 12, "name": "VIP"}},
        "order": {"id": 4242, "createdAt": "2026-11-20T10:00:00+00:00", "totalPrice": 49900},
        "orderItem": {"id": 1, "resources": [{"course": None, "tag": {"id": 3, "name": "VIP"}}]},
        "pricePlan": {"id": 9, "name": plan, "type": "one_shot", "amount": 49900, "currency": "eur"},
    }


def systeme_headers(
    body: bytes, secret: str = SYSTEME_SECRET, *, message_id: str | None = None, event: str = "SALE_NEW"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "SystemeIO-Webhook",
        "X-Webhook-Event": event,
        "X-Webhook-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-Webhook-Message-Id": message_id or str(uuid.uuid4()),
        "X-Webhook-Event-Timestamp": "2026-11-20T10:00:01+00:00",
        "X-Webhook-Schema-Version": "2",
    }


# A shop that sells one product: a paid checkout of anything else matches no rule (an unserved payment).
MASTERCLASS_ONLY_RULES = f"""
version: 1
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
rules:
  - id: masterclass-purchase
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid" and event.data.object.metadata.product == "masterclass"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101, access: full_access }}
"""


@dataclass(frozen=True)
class PlannedEvent:
    event_id: str
    duplicate: bool
    # (action id, status) of each planned action, in plan order; empty for a duplicate.
    actions: tuple[tuple[str, str], ...] = ()
    # One pending action per run (per contact), in order: what ingest hands to the executor.
    runs: tuple[str, ...] = ()


async def record_event(
    engine: AsyncEngine,
    *,
    source: str,
    event_type: str | None,
    provider_id: str | None,
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    occurred_at: datetime | None,
    outcomes: Sequence[RuleOutcome],
    rules_version: str,
    now: datetime,
    approval_window: timedelta = timedelta(days=7),
    modes: Mapping[str, str | None] | None = None,
) -> PlannedEvent:
    """An event as production stores and plans it: stored alone (ingest, app/store/events.py), then judged with
    `outcomes` and its plan written (the planner, app/store/plans.py)."""
    arrived = dict(modes or {})
    new = NewEvent(source, event_type, provider_id, payload, headers, occurred_at, rules_version, now, modes=arrived)
    [stored] = await record_events(engine, [new])
    if stored.duplicate:
        return PlannedEvent(stored.event_id, True)
    event = Unplanned(
        stored.event_id, source, event_type, payload, storable_time(occurred_at), now, arrived.get(DEFAULT_ACCOUNT)
    )
    _, runs = await record_plans(
        engine,
        [event],
        lambda _: outcomes,
        rules_version=rules_version,
        now=now,
        approval_window=approval_window,
        modes=arrived,
    )
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(actions.c.id, actions.c.status)
            .where(actions.c.event_id == stored.event_id)
            .order_by(actions.c.order_key)
        )
        planned = tuple((row.id, row.status) for row in rows)
    return PlannedEvent(stored.event_id, False, planned, tuple(runs))


EXAMPLE_ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_loader_test_stripe",
    "SYSTEME_WEBHOOK_SECRET": "loader-test-systeme",
    "PARTNER_WEBHOOK_SECRET": "whsec_bG9hZGVyLXRlc3QtcGFydG5lcg==",
    "SIGNUP_FORM_TOKEN": "loader-test-form",
}


HEAD = """version: 1
sources:
  shop: { type: stripe, secret: "s" }
rules:
"""


DRIP = RULES.replace(
    "      - add_to_community: { community: Insiders }\n",
    "      - add_to_community: { community: Insiders }\n        after: 7d\n      - tag: Week two\n        after: 14d\n",
).replace(
    "      - untag: Masterclass buyer\n",
    "      - cancel_scheduled: masterclass-purchase\n      - untag: Masterclass buyer\n",
)


def drip_settings(make_settings, tmp_path, **overrides):
    path = tmp_path / "drip.yaml"
    path.write_text(DRIP)
    return make_settings(rules_file=str(path), **overrides)


VIP_RULES = (
    RULES
    + """
  - id: vip
    on: stripe/customer.updated
    contact: { email: "{{ event.email }}" }
    actions: [ { tag: VIP } ]
"""
)


def rules_file(text: str = RULES):
    return parse_rules(text, path="rules.yaml", env=rules_environment()).file


# A two-course shop for the dashboard's payments: the masterclass serves its buyer (and schedules a bonus step a
# week later), the bootcamp enrolls in course 102, which a test may have the account refuse; any other product is
# unmapped.
SHOP_RULES = f"""
version: 1
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
rules:
  - id: masterclass-purchase
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid" and event.data.object.metadata.product == "masterclass"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101, access: full_access }}
      - tag: Week one done
        after: 7d
  - id: bootcamp-purchase
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid" and event.data.object.metadata.product == "bootcamp"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - enroll: {{ course: 102, access: full_access }}
"""


def checkout_for(email: str, product: str, *, amount: int = 19900) -> dict[str, Any]:
    """A paid Stripe checkout of `product` (its metadata), for `amount` cents in EUR."""
    event = stripe_checkout(email)
    event["data"]["object"]["metadata"] = {"product": product}
    event["data"]["object"]["amount_total"] = amount
    return event


def seed_leads(sim, count: int, *, prefix: str = "lead") -> list[dict[str, Any]]:
    """Contacts already in the simulator's account, registered long ago (as a seller's leads are), in id order."""
    made = []
    for n in range(count):
        contact = sim.account.create_contact(
            {"email": f"{prefix}{n}@yopmail.com", "fields": [{"slug": "first_name", "value": "Ada Lovelace"}]}
        )
        contact["registeredAt"] = f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}+00:00"
        made.append(contact)
    return made
