"""Rule evaluation cost per event with 10, 1,000 and 10,000 rules, of which only a few can match.

    python -m bench.rules [--events 2000]

Rules are indexed by source and event type, so rules listening to other types should cost nothing; the figure to
watch is the 10,000-rule time against the 10-rule time (target: within 2x).
"""

from __future__ import annotations

import argparse
import time

from app.rules.engine import RuleSet
from app.rules.loader import parse_rules

HEAD = """version: 1
sources:
  stripe: { type: stripe, secret: s }
  form: { type: form, token: t }
rules:
  - id: purchase
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid"
    contact:
      email: "{{ event.data.object.customer_details.email }}"
      first_name: "{{ event.data.object.customer_details.name | first_word }}"
    actions: [ { tag: Buyer }, { enroll: { course: 101 } } ]
  - id: any-checkout
    on: stripe/checkout.*
    contact: { email: "{{ event.data.object.customer_details.email }}" }
    actions: [ { tag: Checkout } ]
"""
FILLER = """  - id: other-{n}
    on: [stripe/invoice.type{n}, form]
    if: event.data.object.amount_total > {n}
    contact: {{ email: "{{{{ event.email }}}}" }}
    actions: [ {{ tag: "T{n}" }} ]
"""
PAYLOAD = {
    "type": "checkout.session.completed",
    "data": {"object": {"payment_status": "paid", "customer_details": {"email": "a@yopmail.com", "name": "Ada L"}}},
}


def build(total: int) -> RuleSet:
    # Filler rules listen to other event types of the same source (and to a form), never to this event.
    text = HEAD + "".join(FILLER.format(n=n) for n in range(total - 2))
    return RuleSet(parse_rules(text, path="bench", env={}))


def per_event(rules: RuleSet, events: int) -> float:
    for _ in range(200):
        rules.plan(source="stripe", event_type="checkout.session.completed", payload=PAYLOAD)
    started = time.perf_counter()
    for _ in range(events):
        outcomes = rules.plan(source="stripe", event_type="checkout.session.completed", payload=PAYLOAD)
    elapsed = time.perf_counter() - started
    assert [o.rule_id for o in outcomes] == ["purchase", "any-checkout"]
    return elapsed / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    times = {}
    for total in (10, 1_000, 10_000):
        started = time.perf_counter()
        rules = build(total)
        load = time.perf_counter() - started
        times[total] = per_event(rules, args.events)
        print(f"{total:>6} rules: {times[total] * 1e6:8.1f} µs per event   (load {load:6.2f} s)")
    print(f"ratio 10,000 / 10 rules: {times[10_000] / times[10]:.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
