"""Syntax errors of a rules file in words a seller reads, at the mistake's line and column, the parser's after."""

from __future__ import annotations

import pytest

from app.errors import RulesError
from app.rules.loader import parse_rules

HEAD = "version: 1\nsources:\n  f: { type: form, token: t0k3n }\nrules:\n"


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, path="rules.yaml", env={})
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "where", "words", "parser"),
    [
        (
            "version: 1\nrules:\n  id: a\n  - id: b\n",
            "rules.yaml:4:3:",
            "a list item ('-') where a key was expected: check the indentation",
            "expected <block end>, but found '-'",
        ),
        ("version: 1\nsources:\n\tf: 1\n", "rules.yaml:3:1:", "a tab: YAML indents with spaces only", "'\\t'"),
        ('version: 1\nx: "abc\ny: 2\n', "rules.yaml:2:4:", "a quote that is never closed", "end of stream"),
        ("version: 1\nversion: 2\n", "rules.yaml:2:1:", "the key 'version' appears twice", "duplicate key"),
        ("version: 1\nrules: a: b\n", "rules.yaml:2:9:", "a ':' where none can be", "mapping values"),
        ("version: 1\nx: @me\n", "rules.yaml:2:4:", "a value that starts with '@' must be in quotes", "'@'"),
    ],
)
def test_yaml_mistakes_are_said_in_words_where_they_are(text, where, words, parser):
    (line,) = problems(text)
    assert line.startswith(f"{where} YAML syntax error: {words}"), line
    assert parser in line.split("(the parser says: ", 1)[1]


@pytest.mark.parametrize(
    ("condition", "words", "parser"),
    [
        (
            'event.status = "paid"',
            "a single `=` where `==` was meant: `=` cannot compare, write `==` (after `event.status`)",
            "chunk after",
        ),
        ("event.status => 3", "`=>` is not an operator: write `>=`", "chunk after"),
        ("event.a && event.b", "`&&` is not Jinja: write `and`", "unexpected char '&'"),
        ("event.a || event.b", "`||` is not Jinja: write `or`", "expected token 'name'"),
        ("event.a ==", "the expression stops too early", "end of template"),
        ("event.a event.b", "two values side by side", "chunk after expression"),
    ],
)
def test_expression_mistakes_are_said_in_words_at_the_condition(condition, words, parser):
    rule = f"  - id: r\n    on: f\n    if: '{condition}'\n    contact: {{ email: a@yopmail.com }}\n    actions: [ {{ tag: A }} ]\n"
    (line,) = problems(HEAD + rule)
    assert line.startswith(f"rules.yaml:7:9: rule 'r': invalid `if` expression: {words}"), line
    assert parser in line.split("(the parser says: ", 1)[1]


def test_a_text_with_a_single_equals_sign_inside_quotes_is_not_taken_for_one():
    rule = "  - id: r\n    on: f\n    if: 'event.a \"x=y\"'\n    contact: { email: a@yopmail.com }\n    actions: [ { tag: A } ]\n"
    (line,) = problems(HEAD + rule)
    assert "two values side by side" in line and "`==`" not in line


def test_template_mistakes_are_said_in_words():
    rule = '  - id: r\n    on: f\n    contact: { email: "{{ event.email }" }\n    actions: [ { tag: A } ]\n'
    (line,) = problems(HEAD + rule)
    assert line.startswith("rules.yaml:7:23: rule 'r': invalid template '{{ event.email }': a '}' that closes nothing")
    assert line.endswith("(the parser says: unexpected '}')")
