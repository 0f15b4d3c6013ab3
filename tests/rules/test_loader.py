"""Loading rules files: the example file, `${VAR}`, and one line per problem with its position."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.rules.loader import load_rules, parse_rules
from app.rules.schema import EnrollAction, TagAction
from tests.factories import EXAMPLE_ENV, HEAD
from tests.flows import problems

ROOT = Path(__file__).resolve().parents[2]


def test_example_rules_file_loads():
    loaded = load_rules(ROOT / "rules.yaml", EXAMPLE_ENV)
    assert [r.id for r in loaded.file.rules][:2] == ["masterclass-purchase", "refund-revokes-access"]
    first = loaded.file.rules[0]
    assert first.actions[0] == TagAction(kind="tag", name="Masterclass buyer")
    assert first.actions[1] == EnrollAction(kind="enroll", course=101, access="full_access")
    assert loaded.file.sources["stripe"].secret == ("whsec_loader_test_stripe",)
    assert len(loaded.version) == 16


def test_version_changes_with_content():
    a = parse_rules(HEAD + "  []\n", path="r", env={})
    b = parse_rules(HEAD.replace('"s"', '"t"') + "  []\n", path="r", env={})
    assert a.version != b.version


def test_env_variables_are_substituted_in_values_not_text():
    text = HEAD.replace('"s"', '"${SECRET}"') + "  - { id: r1, on: shop, actions: [{cancel_subscription: '1'}] }\n"
    loaded = parse_rules(text, path="r", env={"SECRET": "a: b # not yaml"})
    assert loaded.file.sources["shop"].secret == ("a: b # not yaml",)


def test_missing_env_variable_is_named_with_its_position():
    text = HEAD.replace('"s"', '"${NOPE}"') + "  []\n"
    assert problems(text) == ["r.yaml:3:33: source 'shop': environment variable NOPE is not set"]


def test_yaml_syntax_error_has_position():
    (line,) = problems("version: 1\nsources: {a: [\n")
    assert line.startswith("r.yaml:3:1: YAML syntax error")


def test_yaml_1_2_keeps_on_as_a_string_key():
    text = HEAD + "  - id: r1\n    on: shop\n    actions: [{cancel_subscription: '1'}]\n"
    assert parse_rules(text, path="r", env={}).file.rules[0].on == ("shop",)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "  - { id: r1, on: shop, colour: red, actions: [{cancel_subscription: '1'}] }",
            ["r.yaml:5:25: rule 'r1': unknown key `colour`"],
        ),
        (
            "  - { id: r1, on: shop, contact: {emial: x}, actions: [{tag: X}] }",
            [
                "r.yaml:5:34: rule 'r1': `contact.email`: Field required",
                "r.yaml:5:35: rule 'r1': unknown key `emial` (did you mean `email`?)",
            ],
        ),
        (
            "  - { id: r1, on: shpo, actions: [{cancel_subscription: '1'}] }",
            ["r.yaml:5:19: rule 'r1': `on: shpo` names an unknown source (did you mean `shop`?)"],
        ),
        (
            "  - { id: r1, on: shop, actions: [{untagg: X}] }",
            ["r.yaml:5:35: rule 'r1': unknown action `untagg` (did you mean `untag`?)"],
        ),
        (
            "  - { id: r1, on: shop, actions: [{tag: X}] }",
            ["r.yaml:5:5: rule 'r1': actions tag act on a contact, but the rule has no `contact`"],
        ),
        (
            "  - { id: r1, on: shop, contact: {email: x}, actions: [{enroll: {course: 1, access: partial_access}}] }",
            ["r.yaml:5:65: rule 'r1': access 'partial_access' needs `modules` (a list of module ids)"],
        ),
        (
            "  - { id: r1, on: shop, contact: {email: x}, actions: [{enroll: {course: 1, access: most}}] }",
            [
                "r.yaml:5:85: rule 'r1': `access`: Input should be 'full_access', 'partial_access', 'dripping_content' or 'partial_dripping_access'"
            ],
        ),
    ],
)
def test_each_kind_of_problem_names_the_rule_and_its_position(rule, expected):
    assert problems(HEAD + rule + "\n") == expected


def test_duplicate_rule_ids_are_reported():
    rule = "  - { id: r1, on: shop, actions: [{cancel_subscription: '1'}] }\n"
    assert problems(HEAD + rule + rule) == ["r.yaml:6:11: rule 'r1': duplicate rule id"]


def test_signed_source_without_secret_is_refused():
    text = 'version: 1\nsources:\n  shop: { type: stripe, secret: "" }\n'
    assert problems(text) == ["r.yaml:3:9: source 'shop': a 'stripe' source needs a non-empty `secret`"]


def test_every_problem_is_reported_at_once():
    text = "sources:\n  a: { type: form }\nrules:\n  - { id: r1, on: b, actions: [{x: 1}] }\n"
    found = problems(text)
    assert len(found) >= 3
    assert found[0] == "r.yaml:1:1: missing `version: 1`"


def test_source_names_must_fit_a_url_path():
    assert problems('version: 1\nsources:\n  "a b": { type: form, token: t }\n') == [
        "r.yaml:3:3: source 'a b': use letters, digits, `-`, `_` or `.` (at most 100)"
    ]


def test_contact_values_systeme_would_refuse_are_reported_when_they_are_literal():
    long = "x" * 256
    text = HEAD + (
        "  - id: r1\n"
        "    on: shop\n"
        f"    contact: {{ email: x, locale: ja, first_name: {long}, fields: {{ city: '{{{{ event.city }}}}' }} }}\n"
        f"    actions: [{{update_contact: {{fields: {{company_name: {long}}}}}}}]\n"
        "  - { id: r2, on: shop, contact: {email: x, locale: '{{ event.locale }}'}, actions: [{tag: X}] }\n"
    )
    found = problems(text)
    assert len(found) == 3, found  # a template is checked when it is sent, not here
    assert "locale 'ja' is not a Systeme.io locale code" in found[0] and "jp" in found[0]
    assert all("at most 255 characters in Systeme.io; this one has 256" in p for p in found[1:])
