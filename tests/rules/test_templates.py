"""Template filters for names (a full name split into the first name and surname Systeme.io keeps apart), and plain
payload paths and comparisons judged without Jinja, exactly as Jinja would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.templates import (
    Node,
    PathComparison,
    PathTemplate,
    compile_condition,
    compile_expression,
    compile_fast,
    compile_template,
    evaluate,
    render,
)


def rendered(template: str, payload: dict[str, object]) -> str:
    return render(compile_template(template), {"event": Node(payload, "event")})


@pytest.mark.parametrize(
    ("name", "first", "surname"),
    [
        ("Ada Lovelace", "Ada", "Lovelace"),
        ("  Ada   King  Lovelace ", "Ada", "King Lovelace"),
        ("Lovelace, Ada", "Ada", "Lovelace"),
        ("Jean-Luc Picard", "Jean-Luc", "Picard"),
        ("Ada", "Ada", ""),
        ("", "", ""),
        (None, "", ""),
    ],
)
def test_first_name_of_and_surname_of(name, first, surname):
    assert rendered("{{ event.name | first_name_of }}", {"name": name}) == first
    assert rendered("{{ event.name | surname_of }}", {"name": name}) == surname


def test_a_missing_name_renders_empty_and_never_overwrites():
    assert rendered("{{ event.name | first_name_of }}|{{ event.name | surname_of }}", {}) == "|"


# Values a payload path can end on, or pass through: the fast path must print each exactly as Jinja does.
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["  padded  ", "upper", "items", "\n", "0"]),
)
_payloads = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "items", "upper"]), inner, max_size=3)
    ),
    max_leaves=12,
)


class TestPlainPaths:
    """`{{ event.a.b }}` is read straight from the payload; it must render exactly as the Jinja template does."""

    @settings(max_examples=400, deadline=None)
    @given(
        payload=st.dictionaries(st.sampled_from(["a", "b", "items"]), _payloads, max_size=3),
        keys=st.lists(st.sampled_from(["a", "b", "items", "upper", "keys"]), min_size=1, max_size=4),
        spacing=st.sampled_from(["{{ %s }}", "{{%s}}", "  {{  %s }} ", "\n{{ %s }}\n"]),
    )
    def test_renders_as_jinja(self, payload, keys, spacing):
        source = spacing % ".".join(["event", *keys])
        fast = compile_fast(source)
        assert isinstance(fast, PathTemplate)
        context = {"event": Node(payload, "event")}
        assert render(fast, context) == render(compile_template(source), context)

    @pytest.mark.parametrize(
        "source", ["{{ event.name | lower }}", "Hi {{ event.name }}", "{{ event['a'] }}", "{{ source }}", "plain"]
    )
    def test_other_templates_stay_jinja(self, source):
        assert not isinstance(compile_fast(source), PathTemplate)

    def test_a_method_of_a_text_value_is_left_to_jinja(self):
        # `name.upper` is an attribute of the text, not a payload key: Jinja's own lookup decides what prints.
        context = {"event": Node({"name": "ada"}, "event")}
        assert render(compile_fast("{{ event.name.upper }}"), context) == render(
            compile_template("{{ event.name.upper }}"), context
        )


class TestPathComparisons:
    """`event.a.b == "x"` is judged straight from the payload: the same value, reads and missing path as Jinja."""

    @settings(max_examples=400, deadline=None)
    @given(
        payload=st.dictionaries(st.sampled_from(["a", "b", "items"]), _payloads, max_size=3),
        keys=st.lists(st.sampled_from(["a", "b", "items", "upper"]), min_size=1, max_size=4),
        operator=st.sampled_from(["==", "!=", " == "]),
        literal=st.sampled_from(['"paid"', "'paid'", '""', "0", "1", "-1", "true", "False", "none", "None", '"0"']),
    )
    def test_judges_as_jinja(self, payload, keys, operator, literal):
        source = f"{'.'.join(['event', *keys])}{operator}{literal}"
        fast = compile_condition(source)
        assert isinstance(fast, PathComparison)
        context = {"event": Node(payload, "event"), "source": "s", "event_type": None}
        jinja = evaluate(compile_expression(source), context)
        judged = evaluate(fast, context)
        assert (judged.value, judged.missing, judged.reads, judged.error) == (
            jinja.value,
            jinja.missing,
            jinja.reads,
            jinja.error,
        )

    @pytest.mark.parametrize(
        "source", ["event.a == 1.5", "event.a > 1", "event.a", 'event.a == "x" and event.b', "event['a'] == 1"]
    )
    def test_other_conditions_stay_jinja(self, source):
        assert not isinstance(compile_condition(source), PathComparison)
