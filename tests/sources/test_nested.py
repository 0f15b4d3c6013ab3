"""Bracketed form keys read as nested objects, the way PHP (and json_encode) would build them, within bounds."""

from __future__ import annotations

import pytest

from app.sources.nested import MAX_DEPTH, MAX_VALUES, nest_brackets


def nested(fields: dict) -> dict:
    """Only what nesting added."""
    return {k: v for k, v in nest_brackets(fields).items() if k not in fields}


def test_flat_keys_stay_and_nested_ones_are_added():
    fields = {"customer[email]": "a@yopmail.com", "customer[address][country]": "FR", "event": "order.success"}
    out = nest_brackets(fields)
    assert out["customer[email]"] == "a@yopmail.com" and out["event"] == "order.success"
    assert out["customer"] == {"email": "a@yopmail.com", "address": {"country": "FR"}}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # Keys 0..n-1 in order are a list, as json_encode writes a PHP array.
        ({"items[0][name]": "a", "items[1][name]": "b"}, {"items": [{"name": "a"}, {"name": "b"}]}),
        ({"tags[]": ["x", "y"], "one[]": "z"}, {"tags": ["x", "y"], "one": ["z"]}),
        # Anything else is an object with string keys.
        ({"m[1]": "a", "m[0]": "b"}, {"m": {"1": "a", "0": "b"}}),
        ({"p[5]": "a", "p[]": "b"}, {"p": {"5": "a", "6": "b"}}),
        ({"a[x][]": "1", "a[x][]x": "2"}, {"a": {"x": ["1"]}}),
        # A repeated non-list key keeps its values together, like the flat key.
        ({"c[k]": ["1", "2"]}, {"c": {"k": ["1", "2"]}}),
    ],
)
def test_php_array_semantics(fields, expected):
    assert nested(fields) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"a": "plain", "a[b]": "bracketed"},  # the plain key wins
        {"[x]": "1", "x[": "2", "x]": "3", "a[b[c]]": "4", "a[b]c": "5", "a]b[": "6"},  # malformed
    ],
)
def test_plain_and_malformed_keys_are_not_nested_over(fields):
    assert nest_brackets(fields) == fields


def test_a_conflicting_key_stays_flat_only():
    assert nested({"q[b]": "1", "q[b][c]": "2"}) == {"q": {"b": "1"}}
    assert nested({"q[b][c]": "2", "q[b]": "1"}) == {"q": {"b": {"c": "2"}}}


def test_depth_is_bounded():
    deep_enough = "a" + "[x]" * MAX_DEPTH
    assert "a" in nested({deep_enough: "1"})
    assert nested({"a" + "[x]" * (MAX_DEPTH + 1): "1"}) == {}


def test_hostile_keys_cost_little_and_never_raise():
    hostile = {"a" + "[]" * 100_000: "1", "b" + "[" * 100_000: "2", "c[" + "9" * 5000 + "]": "3", "c[]": "4"}
    out = nest_brackets(hostile)
    assert "a" not in out and "b" not in out
    assert list(out["c"].values()) == ["3", "4"]


def test_too_many_values_are_not_nested_at_all():
    assert nested({"a[]": ["v"] * MAX_VALUES})["a"] == ["v"] * MAX_VALUES
    many = {f"a[{i}]": "v" for i in range(MAX_VALUES + 1)}
    assert nest_brackets(many) == many
