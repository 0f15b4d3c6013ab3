"""Action parameters read from their stored JSON: typed as the steps use them, refused in words when they do not fit."""

from __future__ import annotations

import pytest

from app.actions.params import (
    BadParams,
    CancelScheduledParams,
    DeleteContactParams,
    EnrollParams,
    FieldsParams,
    SubscriptionParams,
    TagParams,
    parse_params,
)


def test_each_kind_reads_the_format_the_planner_stores():
    assert parse_params("tag", {"name": "VIP"}) == TagParams(name="VIP")
    assert parse_params("untag", {"id": 42}) == TagParams(id=42)
    # A course named by its id stays a number; a rendered name stays text, even when it is made of digits.
    assert parse_params("enroll", {"course": 101, "access": "partial_access", "modules": [1, 2]}) == EnrollParams(
        course=101, access="partial_access", modules=(1, 2)
    )
    assert parse_params("unenroll", {"course": "12"}).course == "12"  # type: ignore[union-attr]
    assert parse_params("update_contact", {"fields": {"city": "Lyon"}}) == FieldsParams(fields={"city": "Lyon"})
    assert parse_params("cancel_subscription", {"subscription": "601"}) == SubscriptionParams(subscription="601")
    assert parse_params("cancel_scheduled", {"rule": "nurture"}) == CancelScheduledParams(rule="nurture")
    assert parse_params("delete_contact", {}) == DeleteContactParams()


def test_keys_no_step_reads_are_ignored():
    assert parse_params("tag", {"name": "VIP", "colour": "red"}) == TagParams(name="VIP")


@pytest.mark.parametrize(
    ("kind", "raw", "words"),
    [
        ("enroll", {"course_id": 101}, "enroll action do not fit it (course: Field required)"),
        ("cancel_subscription", {"subscription": 1, "when": "Later"}, "when: Input should be 'Now' or"),
        ("update_contact", {"fields": ["city"]}, "fields: Input should be a valid dictionary"),
        ("tag", "VIP", "parameters of this tag action are not an object ('VIP')"),
        ("join_forum", {}, "unknown action kind 'join_forum'"),
    ],
)
def test_parameters_that_do_not_fit_are_refused_in_one_line(kind, raw, words):
    with pytest.raises(BadParams, match="nothing was sent") as refused:
        parse_params(kind, raw)
    assert words in str(refused.value) and "\n" not in str(refused.value)
