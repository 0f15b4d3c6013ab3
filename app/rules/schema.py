"""Frozen pydantic models of the rules file (`version: 1`). The engine only ever sees these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Approval = Literal["auto", "required"]
AccessType = Literal["full_access", "partial_access", "dripping_content", "partial_dripping_access"]
SourceType = Literal["stripe", "systeme", "standard-webhooks", "form"]
SIGNED_TYPES = frozenset({"stripe", "systeme", "standard-webhooks"})
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SourceConfig(Frozen):
    """One entry of `sources:`: where events come from and how they prove it."""

    type: SourceType
    secret: tuple[str, ...] = ()
    token: str | None = None
    redirect: str | None = None
    tolerance: int = Field(300, ge=1)
    id_field: str | None = None

    @field_validator("secret", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _credentials(self) -> SourceConfig:
        # An empty secret verifies against an empty key, which anyone can forge.
        if self.type in SIGNED_TYPES and not any(s.strip() for s in self.secret):
            raise ValueError(f"a '{self.type}' source needs a non-empty `secret`")
        if self.type == "form" and not (self.token or "").strip():
            raise ValueError("a 'form' source needs a non-empty `token` (sent as ?token= or X-Webhook-Token)")
        if self.redirect is not None and self.type != "form":
            raise ValueError("`redirect` only applies to 'form' sources")
        return self


class ContactSpec(Frozen):
    """How to find or create the contact the actions apply to; every value is a template."""

    email: str
    first_name: str | None = None
    surname: str | None = None
    locale: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    update: Literal["fill", "overwrite", "never"] = "fill"


class _Action(Frozen):
    approval: Approval | None = None


class TagAction(_Action):
    kind: Literal["tag", "untag"]
    name: str | None = None
    id: int | None = None

    @model_validator(mode="after")
    def _name_or_id(self) -> TagAction:
        if (self.name is None) == (self.id is None):
            raise ValueError("give the tag as a name or as {id: 123}, not both")
        return self


class EnrollAction(_Action):
    kind: Literal["enroll"]
    course: int | str
    access: AccessType = "full_access"
    modules: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _modules_for_partial(self) -> EnrollAction:
        if self.access.startswith("partial") and not self.modules:
            raise ValueError(f"access '{self.access}' needs `modules` (a list of module ids)")
        return self


class UnenrollAction(_Action):
    kind: Literal["unenroll"]
    course: int | str


class CommunityAction(_Action):
    kind: Literal["add_to_community", "remove_from_community"]
    community: int | str


class UpdateContactAction(_Action):
    kind: Literal["update_contact"]
    fields: dict[str, str]


class CancelSubscriptionAction(_Action):
    kind: Literal["cancel_subscription"]
    subscription: int | str
    when: Literal["Now", "WhenBillingPeriodEnds"] = "WhenBillingPeriodEnds"


Action = Annotated[
    TagAction | EnrollAction | UnenrollAction | CommunityAction | UpdateContactAction | CancelSubscriptionAction,
    Field(discriminator="kind"),
]
ACTION_KINDS = (
    "tag",
    "untag",
    "enroll",
    "unenroll",
    "add_to_community",
    "remove_from_community",
    "update_contact",
    "cancel_subscription",
)
# Actions that need a Systeme.io contact, and so a `contact:` on their rule.
CONTACT_KINDS = frozenset(ACTION_KINDS) - {"cancel_subscription"}
ACTION_MODELS: dict[str, type[_Action]] = {
    "tag": TagAction,
    "untag": TagAction,
    "enroll": EnrollAction,
    "unenroll": UnenrollAction,
    "add_to_community": CommunityAction,
    "remove_from_community": CommunityAction,
    "update_contact": UpdateContactAction,
    "cancel_subscription": CancelSubscriptionAction,
}
# `- tag: NAME` is short for `- tag: {name: NAME}`; likewise for the other one-parameter actions.
SHORTHAND = {
    "tag": "name",
    "untag": "name",
    "unenroll": "course",
    "add_to_community": "community",
    "remove_from_community": "community",
    "cancel_subscription": "subscription",
}


class Rule(Frozen):
    id: str = Field(pattern=ID_PATTERN)
    description: str | None = None
    enabled: bool = True
    on: tuple[str, ...]
    if_: str | None = Field(None, alias="if")
    contact: ContactSpec | None = None
    # Checked when the action runs, against the contact as it is in Systeme.io then.
    unless_tagged: str | None = None
    only_if_tagged: str | None = None
    approval: Approval | None = None
    actions: tuple[Action, ...] = Field(min_length=1)

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("if_", mode="before")
    @classmethod
    def _plain_boolean(cls, value: Any) -> Any:
        # `if: true` parses as a YAML boolean; it means the same as the expression `true`.
        return str(value).lower() if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _contact_for_contact_actions(self) -> Rule:
        kinds = sorted({a.kind for a in self.actions if a.kind in CONTACT_KINDS})
        if kinds and self.contact is None:
            raise ValueError(f"actions {', '.join(kinds)} act on a contact, but the rule has no `contact`")
        if (self.unless_tagged or self.only_if_tagged) and self.contact is None:
            raise ValueError("`unless_tagged` and `only_if_tagged` need a `contact` to look at")
        return self


class RulesFile(Frozen):
    version: Literal[1]
    sources: dict[str, SourceConfig]
    rules: tuple[Rule, ...] = ()

    def secret_values(self) -> set[str]:
        """Source secrets and tokens, for the log scrubber."""
        values = {s for source in self.sources.values() for s in source.secret}
        values |= {source.token for source in self.sources.values() if source.token}
        return values
