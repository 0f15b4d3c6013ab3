"""`after:` and `cancel_scheduled` in the rules: how they are written, planned and checked."""

from __future__ import annotations

import jsonschema
import pytest
from ruamel.yaml import YAML

from app.rules.engine import RuleSet
from app.rules.jsonschema import rules_schema
from app.rules.loader import parse_rules
from tests.clitools import cli
from tests.factories import HEAD
from tests.flows import problems

# The example, as a seller writes it: `after` beside the action's name.
DRIP = (
    HEAD
    + """  - id: masterclass-purchase
    on: shop/checkout.session.completed
    contact: { email: "{{ event.email }}" }
    actions:
      - enroll: { course: 101 }
      - add_to_community: { community: 7 }
        after: 7d                      # s, m, h, d; counted from the event's time
      - tag: Week two
      - tag: { name: Week three, after: 21d }
  - id: refund
    on: shop/charge.refunded
    contact: { email: "{{ event.email }}" }
    actions:
      - cancel_scheduled: { rule: masterclass-purchase }
      - unenroll: { course: 101 }
      - cancel_scheduled: refund
"""
)
DAY = 86400.0


def plan(text: str, event_type: str) -> list:
    rules = RuleSet(parse_rules(text, path="r.yaml", env={}))
    (outcome,) = rules.plan(source="shop", event_type=event_type, payload={"email": "ada@yopmail.com"})
    return list(outcome.actions)


def test_a_step_waits_for_the_latest_after_of_it_and_the_steps_before_it():
    actions = plan(DRIP, "checkout.session.completed")
    assert [(a.kind, a.after) for a in actions] == [
        ("enroll", None),
        ("add_to_community", 7 * DAY),
        ("tag", 7 * DAY),  # no `after` of its own: it waits behind the community step
        ("tag", 21 * DAY),
    ]
    # The delay is the step's timing, not one of its parameters.
    assert [a.params for a in actions[1:]] == [{"community": 7}, {"name": "Week two"}, {"name": "Week three"}]


def test_cancel_scheduled_names_a_rule_in_either_form():
    actions = plan(DRIP, "charge.refunded")
    assert [(a.kind, a.params, a.after) for a in actions] == [
        ("cancel_scheduled", {"rule": "masterclass-purchase"}, None),
        ("unenroll", {"course": 101}, None),
        ("cancel_scheduled", {"rule": "refund"}, None),
    ]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            "      - tag: X\n        after: 7x\n",
            "r.yaml:10:16: rule 'r1': `after`: '7x' is not a duration: use a number and a unit, like 30s, 10m, 12h or 7d",
        ),
        (
            "      - tag: { name: X, after: 3 }\n",
            "r.yaml:9:32: rule 'r1': `after`: 3 is not a duration: use a number and a unit, like 30s, 10m, 12h or 7d",
        ),
        (
            "      - tag: X\n        after: 400d\n",
            "r.yaml:10:16: rule 'r1': `after`: '400d' is too far ahead: at most 365d",
        ),
        (
            "      - tag: X\n        afer: 7d\n",
            "r.yaml:10:9: rule 'r1': unknown key `afer` beside `tag` (did you mean `after`?)",
        ),
        (
            "      - tag: { name: X, after: 1d }\n        after: 2d\n",
            "r.yaml:10:9: rule 'r1': `after` is given twice: beside and inside",
        ),
        (
            "      - cancel_scheduled: { rule: masterclass }\n",
            "r.yaml:9:35: rule 'r1': `cancel_scheduled` names rule 'masterclass', which is not in this file"
            " (did you mean `masterclass-buy`?)",
        ),
        (
            "      - cancel_scheduled: nope\n",
            "r.yaml:9:27: rule 'r1': `cancel_scheduled` names rule 'nope', which is not in this file",
        ),
    ],
)
def test_check_reports_bad_durations_and_unknown_rules_where_they_are(action, expected):
    text = (
        HEAD
        + "  - id: r1\n    on: shop\n    contact: { email: x }\n    actions:\n"
        + action
        + "  - { id: masterclass-buy, on: shop, contact: { email: x }, actions: [ { tag: Y } ] }\n"
    )
    assert problems(text) == [expected]


def test_cancel_scheduled_needs_a_contact():
    text = HEAD + "  - { id: r1, on: shop, actions: [ { cancel_scheduled: r1 } ] }\n"
    assert problems(text) == [
        "r.yaml:5:5: rule 'r1': actions cancel_scheduled act on a contact, but the rule has no `contact`"
    ]


def test_the_schema_takes_after_beside_or_inside_and_refuses_a_bad_one():
    document = YAML(typ="safe").load(DRIP)
    jsonschema.validate(document, rules_schema())
    document["rules"][0]["actions"][1]["after"] = "7 days"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, rules_schema())


def test_check_command_reports_a_bad_duration_and_an_unknown_rule(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        DRIP.replace("after: 7d  ", "after: 7 days").replace("{ rule: masterclass-purchase }", "{ rule: purchase }")
    )
    done = cli("check", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{path}:11:16: rule 'masterclass-purchase': `after`: '7 days' is not a duration: use a number and a unit,"
        " like 30s, 10m, 12h or 7d",
        f"{path}:18:35: rule 'refund': `cancel_scheduled` names rule 'purchase', which is not in this file",
    ]
