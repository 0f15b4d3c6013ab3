"""Planning: which rules fire, why not, and what they would do."""

from __future__ import annotations

import pytest

from app.errors import RulesError
from app.rules.engine import RuleSet
from app.rules.loader import parse_rules

SOURCES = """version: 1
sources:
  stripe: { type: stripe, secret: s }
  form: { type: form, token: t }
rules:
"""


def ruleset(rules: str) -> RuleSet:
    return RuleSet(parse_rules(SOURCES + rules, path="r", env={}))


def plan(rs: RuleSet, payload: dict, *, source: str = "stripe", event_type: str | None = "x"):
    return rs.plan(source=source, event_type=event_type, payload=payload)


CONTACT = "contact: { email: '{{ event.email }}' }"


class TestConditions:
    def test_true_condition_matches(self):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, if: 'event.n > 3', {CONTACT}, actions: [{{tag: T}}] }}\n")
        (outcome,) = plan(rs, {"n": 4, "email": "a@yopmail.com"})
        assert outcome.decision == "matched"

    def test_false_condition_says_so(self):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, if: 'event.n > 3', {CONTACT}, actions: [{{tag: T}}] }}\n")
        (outcome,) = plan(rs, {"n": 1, "email": "a@yopmail.com"})
        assert (outcome.decision, outcome.reason) == ("not_matched", "`if` was false: event.n was 1")
        assert outcome.actions == ()

    @pytest.mark.parametrize(
        "expr", ["event.a.b != 'x'", "not event.a.b", "event.a.b is not defined", "event.a.b == ''"]
    )
    def test_missing_value_is_false_even_through_negation(self, expr):
        rs = ruleset(f'  - {{ id: a, on: stripe/x, if: "{expr}", {CONTACT}, actions: [{{tag: T}}] }}\n')
        (outcome,) = plan(rs, {"a": {}, "email": "a@yopmail.com"})
        assert outcome.decision == "not_matched"
        assert outcome.reason == "`if` read event.a.b, which is missing"

    def test_payload_keys_win_over_python_attributes(self):
        rs = ruleset(
            f"  - {{ id: a, on: stripe/x, if: 'event.items == 3 and event.keys == \"k\"', {CONTACT}, actions: [{{tag: T}}] }}\n"
        )
        assert plan(rs, {"items": 3, "keys": "k", "email": "a@yopmail.com"})[0].decision == "matched"

    def test_sandbox_refuses_unsafe_attribute_access(self):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, if: 'event.__class__', {CONTACT}, actions: [{{tag: T}}] }}\n")
        assert plan(rs, {"email": "a@yopmail.com"})[0].decision == "not_matched"

    def test_syntax_errors_fail_at_load_with_position(self):
        with pytest.raises(RulesError) as caught:
            ruleset(
                "  - id: a\n    on: stripe/x\n    if: 'event.n >'\n    contact: { email: '{{ event.email' }\n"
                "    actions: [{tag: T}]\n"
            )
        first, second = caught.value.problems
        assert first.startswith("r:8:9: rule 'a': invalid `if` expression:")
        assert second.startswith("r:9:23: rule 'a': invalid template '{{ event.email':")


class TestOn:
    def test_other_types_and_sources_are_not_candidates(self):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, {CONTACT}, actions: [{{tag: T}}] }}\n")
        assert plan(rs, {}, event_type="y") == []
        assert plan(rs, {}, source="form", event_type=None) == []

    def test_source_alone_matches_every_event_including_untyped_forms(self):
        rs = ruleset(f"  - {{ id: a, on: form, {CONTACT}, actions: [{{tag: T}}] }}\n")
        (outcome,) = plan(rs, {"email": "x@yopmail.com"}, source="form", event_type=None)
        assert outcome.decision == "matched"

    def test_several_rules_match_in_file_order(self):
        rs = ruleset(
            f"  - {{ id: b, on: [stripe/x, stripe/y], {CONTACT}, actions: [{{tag: T}}] }}\n"
            f"  - {{ id: a, on: stripe, {CONTACT}, actions: [{{tag: U}}] }}\n"
            f"  - {{ id: off, enabled: false, on: stripe, {CONTACT}, actions: [{{tag: U}}] }}\n"
        )
        assert [o.rule_id for o in plan(rs, {"email": "a@yopmail.com"})] == ["b", "a"]


class TestRendering:
    def test_contact_fields_render_and_empty_ones_are_left_out(self):
        rs = ruleset(
            "  - id: a\n    on: stripe/x\n    contact:\n      email: ' {{ event.c.email }} '\n"
            "      first_name: '{{ event.c.name }}'\n      surname: '{{ event.c.nope }}'\n"
            "      fields: { phone_number: '{{ event.c.phone }}', city: Paris }\n"
            "      update: overwrite\n    actions: [{tag: T}]\n"
        )
        (outcome,) = plan(rs, {"c": {"email": "Ada@Yopmail.COM", "name": "Ada", "phone": None}})
        assert outcome.contact_email == "ada@yopmail.com"
        assert outcome.actions[0].contact == {
            "email": "ada@yopmail.com",
            "update": "overwrite",
            "fields": {"first_name": "Ada", "city": "Paris"},
        }

    def test_invalid_email_records_the_reason_and_plans_nothing(self):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, {CONTACT}, actions: [{{tag: T}}] }}\n")
        (outcome,) = plan(rs, {"email": "not an email"})
        assert outcome.decision == "invalid"
        assert "'not an email' is empty or invalid" in outcome.reason
        assert outcome.actions == ()

    def test_action_params_are_templates(self):
        rs = ruleset(
            "  - id: a\n    on: stripe/x\n    actions:\n"
            "      - cancel_subscription: { subscription: '{{ event.sub }}', when: Now }\n"
        )
        (outcome,) = plan(rs, {"sub": 42})
        assert outcome.actions[0].params == {"subscription": "42", "when": "Now"}
        assert outcome.actions[0].contact is None

    def test_approval_defaults_and_overrides(self):
        rs = ruleset(
            "  - id: a\n    on: stripe/x\n    approval: auto\n    actions:\n"
            "      - cancel_subscription: { subscription: '1' }\n"
            "      - cancel_subscription: { subscription: '2', approval: required }\n"
            "  - id: b\n    on: stripe/x\n    actions:\n      - cancel_subscription: '3'\n"
        )
        a, b = plan(rs, {})
        assert [p.approval for p in a.actions] == ["auto", "required"]
        assert [p.approval for p in b.actions] == ["required"]
        assert b.actions[0].params == {"subscription": "3", "when": "WhenBillingPeriodEnds"}

    @pytest.mark.parametrize(
        ("template", "payload", "expected"),
        [
            ("{{ event.name | first_word }}", {"name": "  Ada  Lovelace "}, "Ada"),
            ("{{ event.name | first_word }}", {}, ""),
            ("{{ event.amount | cents_to_units }}", {"amount": 19950}, "199.50"),
            ("{{ event.amount | cents_to_units }}", {"amount": None}, ""),
            ("{{ event.city | default('Paris') }}", {"city": None}, "Paris"),
            ("{{ event.city | default('Paris') }}", {"city": ""}, "Paris"),
            ("{{ event.city | default('Paris') }}", {}, "Paris"),
            ("{{ event.city | default('Paris') }}", {"city": "Lyon"}, "Lyon"),
            ("{{ event.name | trim | lower }}", {"name": " ADA "}, "ada"),
        ],
    )
    def test_custom_filters(self, template, payload, expected):
        rs = ruleset(
            f'  - {{ id: a, on: stripe/x, contact: {{ email: a@yopmail.com, fields: {{ city: "{template}" }} }}, actions: [{{tag: T}}] }}\n'
        )
        (outcome,) = plan(rs, payload)
        assert outcome.actions[0].contact["fields"].get("city", "") == expected

    def test_tag_conditions_travel_with_the_contact(self):
        rs = ruleset(
            f"  - {{ id: a, on: stripe/x, unless_tagged: VIP, only_if_tagged: Lead, {CONTACT}, actions: [{{tag: T}}] }}\n"
        )
        (outcome,) = plan(rs, {"email": "a@yopmail.com"})
        assert outcome.actions[0].contact["unless_tagged"] == "VIP"
        assert outcome.actions[0].contact["only_if_tagged"] == "Lead"

    def test_wildcards_in_on(self):
        rs = ruleset(f"  - {{ id: a, on: 'stripe/customer.subscription.*', {CONTACT}, actions: [{{tag: T}}] }}\n")
        assert [
            o.rule_id for o in plan(rs, {"email": "a@yopmail.com"}, event_type="customer.subscription.deleted")
        ] == ["a"]
        assert plan(rs, {}, event_type="customer.created") == []

    def test_tag_shorthand_and_id_form(self):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, {CONTACT}, actions: [{{tag: Buyer}}, {{untag: {{id: 5}}}}] }}\n")
        (outcome,) = plan(rs, {"email": "a@yopmail.com"})
        assert [(p.kind, p.params) for p in outcome.actions] == [("tag", {"name": "Buyer"}), ("untag", {"id": 5})]


class TestTypesWithSlashes:
    """Shopify topics (`orders/paid`) contain slashes: `on` splits at the first one only."""

    TEXT = """version: 1
sources:
  shop: { type: shopify, secret: s }
rules:
  - { id: paid, on: shop/orders/paid, actions: [{cancel_subscription: '1'}] }
  - { id: orders, on: 'shop/orders/*', actions: [{cancel_subscription: '2'}] }
  - { id: all, on: shop, actions: [{cancel_subscription: '3'}] }
"""

    def test_exact_wildcard_and_bare_source(self):
        rs = RuleSet(parse_rules(self.TEXT, path="r", env={}))
        assert [o.rule_id for o in plan(rs, {}, source="shop", event_type="orders/paid")] == ["paid", "orders", "all"]
        assert [o.rule_id for o in plan(rs, {}, source="shop", event_type="orders/create")] == ["orders", "all"]
        assert [o.rule_id for o in plan(rs, {}, source="shop", event_type="refunds/create")] == ["all"]

    def test_explain_names_the_whole_type(self):
        rs = RuleSet(parse_rules(self.TEXT, path="r", env={}))
        outcomes = rs.explain(source="shop", event_type="refunds/create", payload={})
        assert outcomes[0].reason == "`on` is shop/orders/paid; this event is shop/refunds/create"

    def test_unknown_source_is_the_part_before_the_first_slash(self):
        text = self.TEXT.replace("on: shop/orders/paid", "on: shpo/orders/paid")
        with pytest.raises(RulesError) as caught:
            parse_rules(text, path="r.yaml", env={})
        assert caught.value.problems == [
            "r.yaml:5:21: rule 'paid': `on: shpo/orders/paid` names an unknown source (did you mean `shop`?)"
        ]


class TestRuleErrors:
    """A rule's own error (a comparison over null, a method on a missing value) only makes that rule not match."""

    RULES = (
        "  - { id: big, on: stripe/x, if: 'event.amount > 50000', contact: { email: a@yopmail.com }, actions: [{tag: Big}] }\n"
        "  - { id: all, on: stripe/x, contact: { email: a@yopmail.com }, actions: [{tag: Every}] }\n"
    )

    @pytest.mark.parametrize(("amount", "shown"), [(None, "null"), ("lots", '"lots"'), ([1, 2], "[1, 2]")])
    def test_a_comparison_over_a_mistyped_value_does_not_match(self, amount, shown):
        big, every = plan(ruleset(self.RULES), {"amount": amount})
        assert big.decision == "not_matched" and big.actions == ()
        assert big.reason.startswith("`if` failed: TypeError: ")
        assert f"event.amount was {shown}" in big.reason
        assert every.decision == "matched" and [a.kind for a in every.actions] == ["tag"]

    def test_a_comparison_with_a_mapping_does_not_match(self):
        big, every = plan(ruleset(self.RULES), {"amount": {"v": 1}})
        assert big.decision == "not_matched" and big.reason.startswith("`if` failed: TypeError: ")
        assert every.decision == "matched"

    @pytest.mark.parametrize("payload", [{"data": {}}, {"data": {"total": None}}])
    def test_a_comparison_over_a_missing_value_reports_the_missing_path(self, payload):
        rs = ruleset(f"  - {{ id: a, on: stripe/x, if: 'event.data.total.x > 5', {CONTACT}, actions: [{{tag: T}}] }}\n")
        (outcome,) = plan(rs, {**payload, "email": "a@yopmail.com"})
        assert outcome.decision == "not_matched"
        assert outcome.reason.startswith("`if` read event.data.total"), outcome.reason

    @pytest.mark.parametrize("payload", [{}, {"name": None}, {"name": 42}, {"name": ""}])
    def test_a_method_on_a_missing_or_null_value_renders_empty(self, payload):
        rs = ruleset(
            "  - { id: a, on: stripe/x, contact: { email: a@yopmail.com, first_name: \"{{ event.name.split(' ')[0] }}\" }, actions: [{tag: T}] }\n"
            "  - { id: b, on: stripe/x, if: \"event.name.split(' ')[0] == 'Ada'\", contact: { email: a@yopmail.com }, actions: [{tag: T}] }\n"
        )
        a, b = plan(rs, payload)
        assert a.decision == "matched" and a.actions[0].contact["fields"] == {}
        assert b.decision == "not_matched"

    @pytest.mark.parametrize(
        ("template", "payload"),
        [
            ("{{ event.n / event.d }}", {"n": 1, "d": 0}),
            ("{{ event.n + 1 }}", {"n": "1"}),
            ("{{ event.name.startswith(event.p) }}", {"name": "Ada", "p": 5}),
        ],
    )
    def test_a_template_that_raises_makes_only_its_rule_invalid(self, template, payload):
        rs = ruleset(
            f'  - {{ id: a, on: stripe/x, contact: {{ email: a@yopmail.com, first_name: "{template}" }}, actions: [{{tag: T}}] }}\n'
            f"  - {{ id: b, on: stripe/x, contact: {{ email: b@yopmail.com }}, actions: [{{tag: U}}] }}\n"
        )
        a, b = plan(rs, payload)
        assert a.decision == "invalid" and a.actions == ()
        assert a.reason.startswith("a template failed: ")
        assert b.decision == "matched"

    def test_an_action_parameter_that_raises_makes_the_rule_invalid(self):
        rs = ruleset(
            "  - id: a\n    on: stripe/x\n    actions:\n"
            "      - cancel_subscription: { subscription: '{{ event.sub + 1 }}', when: Now }\n"
        )
        (outcome,) = plan(rs, {"sub": "12"})
        assert outcome.decision == "invalid" and outcome.actions == ()

    @pytest.mark.parametrize(
        "expr", ["2 ** event.n > 1", "'ab' * event.n == 'x'", "event.s * event.n == 'x'", "event.n * [1] == []"]
    )
    def test_arithmetic_that_would_exhaust_memory_or_time_is_refused(self, expr):
        rs = ruleset(f'  - {{ id: a, on: stripe/x, if: "{expr}", {CONTACT}, actions: [{{tag: T}}] }}\n')
        (outcome,) = plan(rs, {"n": 10**12, "s": "ab", "email": "a@yopmail.com"})
        assert outcome.decision == "not_matched" and "too large" in outcome.reason

    @pytest.mark.parametrize("expr", ["2 ** event.n == 1024", "'ab' * event.n == 'abababababababababab'"])
    def test_ordinary_arithmetic_still_works(self, expr):
        rs = ruleset(f'  - {{ id: a, on: stripe/x, if: "{expr}", {CONTACT}, actions: [{{tag: T}}] }}\n')
        assert plan(rs, {"n": 10, "email": "a@yopmail.com"})[0].decision == "matched"

    def test_explain_reports_the_same_failure(self):
        rs = ruleset(self.RULES)
        big, every = rs.explain(source="stripe", event_type="x", payload={"amount": None})
        assert big.decision == "not_matched" and "event.amount was null" in big.reason
        assert every.decision == "matched"

    def test_a_long_reason_is_cut(self):
        rs = ruleset(self.RULES)
        big, _ = plan(rs, {"amount": "x" * 100_000})
        assert big.decision == "not_matched" and len(big.reason) <= 1000
