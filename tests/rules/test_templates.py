"""Template filters for names: a full name split into the first name and surname Systeme.io keeps apart."""

from __future__ import annotations

import pytest

from app.rules.templates import Node, compile_template, render


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
