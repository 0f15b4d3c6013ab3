"""The parameters of each action kind, typed: read once from the stored JSON when a run takes the action.

The rules file's models (`app/rules/schema.py`) check what a seller writes; these check what a step receives after
the templates rendered and the row sat in the database, where an older version or a hand edit may have left
something else. The stored format is the rendered rule's own: `{"name": "VIP"}`, `{"course": 12, "access": ...}`.
What only a step can judge (a tag name that rendered empty, a subscription id that is not a number) stays the
step's to say, with the words it always used.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.rules.schema import AccessType


class _Params(BaseModel):
    # Keys no step reads are ignored, not refused: a row written by another version still runs when what it needs
    # is there and well formed.
    model_config = ConfigDict(frozen=True, extra="ignore")


class TagParams(_Params):
    """`tag` and `untag`: a tag by its name, or by its id."""

    name: str | None = None
    id: int | None = None


class EnrollParams(_Params):
    course: int | str
    access: AccessType = "full_access"
    modules: tuple[int, ...] | None = None


class CourseParams(_Params):
    """`unenroll`."""

    course: int | str


class CommunityParams(_Params):
    """`add_to_community` and `remove_from_community`."""

    community: int | str


class FieldsParams(_Params):
    """`update_contact`: slug to rendered value; an empty value is not sent."""

    fields: dict[str, str] = Field(default_factory=dict)


class SubscriptionParams(_Params):
    """`cancel_subscription`: the id as rendered (checked by the step, which says what it got)."""

    subscription: int | str | None = None
    when: Literal["Now", "WhenBillingPeriodEnds"] = "WhenBillingPeriodEnds"


class CancelScheduledParams(_Params):
    """`cancel_scheduled`: the rule whose waiting steps for this contact are cancelled."""

    rule: str


class DeleteContactParams(_Params):
    """`delete_contact`: no parameters (the contact is the rule's)."""


ActionParams = (
    TagParams
    | EnrollParams
    | CourseParams
    | CommunityParams
    | FieldsParams
    | SubscriptionParams
    | CancelScheduledParams
    | DeleteContactParams
)

PARAMS: dict[str, type[ActionParams]] = {
    "tag": TagParams,
    "untag": TagParams,
    "enroll": EnrollParams,
    "unenroll": CourseParams,
    "add_to_community": CommunityParams,
    "remove_from_community": CommunityParams,
    "update_contact": FieldsParams,
    "cancel_subscription": SubscriptionParams,
    "cancel_scheduled": CancelScheduledParams,
    "delete_contact": DeleteContactParams,
}


class BadParams(ValueError):
    """A stored action whose parameters do not fit its kind: it cannot run as it is, now or on a retry."""


def parse_params(kind: str, raw: Any) -> ActionParams:
    """The typed parameters of one stored action, or BadParams saying in a line what is wrong with them."""
    model = PARAMS.get(kind)
    if model is None:
        raise BadParams(f"unknown action kind {kind!r} (written by another version?): nothing was sent")
    if not isinstance(raw, dict):
        shown = str(raw)[:80]
        raise BadParams(f"the stored parameters of this {kind} action are not an object ({shown!r}): nothing was sent")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'parameters'}: {error['msg']}" for error in exc.errors()
        )
        message = f"the stored parameters of this {kind} action do not fit it ({problems}): nothing was sent"
        raise BadParams(message) from exc
