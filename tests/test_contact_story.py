"""A contact's whole story, from the API and the CLI: a purchase, its refund and a scheduled step."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from app.cli.story import story_lines
from app.ui.router import TEMPLATES
from tests.clitools import run_cli
from tests.conftest import SIM_KEY, operator, planned, running, wait_for
from tests.factories import STRIPE_SECRET, stripe_checkout, stripe_headers, stripe_refund, write_rules

RULES = f"""
version: 1
sources:
  stripe: {{ type: stripe, secret: "{STRIPE_SECRET}" }}
rules:
  - id: purchase
    on: stripe/checkout.session.completed
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101, access: full_access }}
      - tag: Masterclass week 2
        after: 7d
  - id: refund
    on: stripe/charge.refunded
    contact: {{ email: "{{{{ event.data.object.billing_details.email }}}}" }}
    actions:
      - untag: Masterclass buyer
"""


async def _post(url: str, event: dict) -> str:
    body = json.dumps(event).encode()
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["event_id"])


async def test_the_story_shows_a_purchase_its_refund_a_scheduled_step_and_the_mirror(
    make_settings, database_url, tmp_path, sim
):
    settings = make_settings(database_url=database_url)
    rules = write_rules(tmp_path, RULES)
    with running(settings) as url:
        bought = await _post(url, stripe_checkout("ada@yopmail.com"))
        await _post(url, stripe_checkout("bob@yopmail.com"))

        async def ran(event_id: str) -> bool:
            actions = (await planned(url, event_id))["actions"]
            return len(actions) > 0 and all(a["status"] in ("succeeded", "scheduled") for a in actions)

        await wait_for(lambda: ran(bought))
        refund = await _post(url, stripe_refund("Ada@yopmail.com"))
        await wait_for(lambda: ran(refund))
        async with operator(url) as http:
            story = (await http.get("/v1/contacts/ADA@yopmail.com")).json()
            nobody = (await http.get("/v1/contacts/nobody@yopmail.com")).json()
    assert [e["id"] for e in story["events"]] == [bought, refund]  # oldest first, Bob's purchase not in it
    purchase, refunded = story["events"]
    assert purchase["payment"] == {"kind": "payment", "amount": "199.00", "currency": "EUR", "product": "masterclass"}
    assert refunded["payment"]["kind"] == "refund"
    assert {r["rule_id"]: r["decision"] for r in purchase["rules"]} == {"purchase": "matched"}
    assert all(a["calls"] for a in purchase["actions"] if a["status"] == "succeeded")
    assert [(a["kind"], a["params"]) for a in story["scheduled"]] == [("tag", {"name": "Masterclass week 2"})]
    (known,) = story["mirror"]
    assert known["contact_id"] == sim.contact("ada@yopmail.com")["id"]
    assert nobody == {"email": "nobody@yopmail.com", "events_total": 0, "events": [], "scheduled": [], "mirror": []}

    env = {"DATABASE_URL": database_url, "RULES_FILE": str(rules), "SYSTEME_API_KEY": SIM_KEY}
    printed = run_cli("contact", "ada@yopmail.com", cwd=tmp_path, **env)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == "ada@yopmail.com: 2 events"
    assert any("stripe/checkout.session.completed  payment 199.00 EUR masterclass" in line for line in lines)
    assert any(line.startswith("  rule refund: matched") for line in lines)
    assert "scheduled:" in lines and any("mirror [default]: contact" in line for line in lines)


def _story_with_mirror() -> dict:
    # As the mirror stores them: an id, None (held, the API did not tell its id) or False (known absent).
    facts = {"courses": {"101": 55, "102": None, "103": False}, "communities": {"7": None, "8": False}}
    known = {"account": "default", "contact_id": 42, "facts": facts, "learned_at": datetime(2026, 3, 1, tzinfo=UTC)}
    return {"email": "ada@yopmail.com", "events_total": 1, "events": [], "scheduled": [], "mirror": [known]}


def test_a_course_or_community_held_with_its_id_unknown_is_shown_only_false_is_absent():
    story = _story_with_mirror()
    (line,) = [line for line in story_lines(story) if line.startswith("mirror")]
    assert line == "mirror [default]: contact 42; courses 101, 102; communities 7"
    html = TEMPLATES.env.get_template("contact.html").render(story=story, statuses={})
    assert [c for c in ("101", "102", "103") if f"course {c}</span>" in html] == ["101", "102"]
    assert "community 7</span>" in html and "community 8" not in html


def test_counts_are_plural_only_when_not_one_and_an_empty_email_is_refused(tmp_path):
    story = _story_with_mirror()
    assert story_lines(story)[0] == "ada@yopmail.com: 1 event"
    done = run_cli("contact", "", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "contact: an email address is required" in done.stderr and "Traceback" not in done.stderr
