"""Frozen pydantic models of the rules file (`version: 1`). The engine only ever sees these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from app.rules.frozen import Frozen

# Re-exported: the rest of the code reads every model of the rules file from here.
from app.rules.source_config import SIGNED_TYPES as SIGNED_TYPES
from app.rules.source_config import TOKEN_TYPES as TOKEN_TYPES
from app.rules.source_config import SourceConfig as SourceConfig
from app.rules.source_config import SourceType as SourceType
from app.systeme.values import LOCALES, MAX_VALUE
from app.timeparse import format_duration, parse_duration

Approval = Literal["auto", "required"]
PriorityName = Literal["high", "normal", "low"]
# A rule with one of these grants access: a buyer waits for it, so by default it goes first under a backlog.
GRANTING_KINDS = frozenset({"enroll", "add_to_community"})
AccessType = Literal["full_access", "partial_access", "dripping_content", "partial_dripping_access"]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# How far ahead a step may be scheduled: a year, which also keeps every due time a valid date.
MAX_AFTER_SECONDS = 365 * 86400
# Keys an action may carry beside its name as well as among its parameters (`- tag: X` with `after: 7d` below).
STEP_OPTIONS = ("after", "approval")


class AccountConfig(Frozen):
    """One entry of `accounts:`: a Systeme.io account reached through a Maton connection or its own API key."""

    # A Maton connection id (sent as Maton-Connection with MATON_API_KEY).
    connection: str | None = None
    # Direct mode: the account's own X-API-Key (and base URL, for a simulator or a proxy).
    api_key: str | None = None
    api_url: str | None = None
    # The contact mirror (app/mirror/): `complete` is read whole by `systeme-flow sync` and kept current, so an
    # email it does not know is created with no lookup; default `learning` (MIRROR_MODE for the `default` account).
    mirror: Literal["learning", "complete"] | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> AccountConfig:
        connection, key = bool((self.connection or "").strip()), bool((self.api_key or "").strip())
        if connection == key:
            raise ValueError("give an account either `connection` (a Maton connection id) or `api_key`, not both")
        if self.api_url and not key:
            raise ValueError("`api_url` goes with `api_key` (direct mode)")
        return self


class ContactSpec(Frozen):
    """How to find or create the contact the actions apply to; every value is a template."""

    email: str
    first_name: str | None = None
    surname: str | None = None
    locale: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    update: Literal["fill", "overwrite", "never"] = "fill"

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        # What a template renders is checked when it is sent; a literal can be told now.
        if value is not None and _literal(value) and value not in LOCALES:
            raise ValueError(f"locale {value!r} is not a Systeme.io locale code: one of {', '.join(sorted(LOCALES))}")
        return value

    @field_validator("first_name", "surname")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _short(value) if value is not None else None

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        return {slug: _short(text) for slug, text in value.items()}


def _literal(value: str) -> bool:
    return "{{" not in value and "{%" not in value


def _short(value: str) -> str:
    """A literal contact value Systeme.io would refuse (over 255 characters) is an error of the rules file."""
    if _literal(value) and len(value) > MAX_VALUE:
        raise ValueError(f"a contact value is at most {MAX_VALUE} characters in Systeme.io; this one has {len(value)}")
    return value


def after_seconds(value: Any) -> float:
    """The seconds in an `after:` value; ValueError with a reader's message otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: use a number and a unit, like 30s, 10m, 12h or 7d")
    seconds = parse_duration(value)
    if seconds > MAX_AFTER_SECONDS:
        raise ValueError(f"{value!r} is too far ahead: at most {format_duration(MAX_AFTER_SECONDS)}")
    return seconds


class _Action(Frozen):
    approval: Approval | None = None
    # Counted from the event's time; the step waits as `scheduled` until then.
    after: str | None = None

    @field_validator("after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None:
            after_seconds(value)
        return value

    @property
    def delay(self) -> float | None:
        """Seconds after the event's time, or None to run at once."""
        return after_seconds(self.after) if self.after is not None else None


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

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        return {slug: _short(text) for slug, text in value.items()}


class CancelSubscriptionAction(_Action):
    kind: Literal["cancel_subscription"]
    subscription: int | str
    when: Literal["Now", "WhenBillingPeriodEnds"] = "WhenBillingPeriodEnds"


class CancelScheduledAction(_Action):
    kind: Literal["cancel_scheduled"]
    rule: str


class DeleteContactAction(_Action):
    """Erase the contact in Systeme.io (a GDPR request, a test buyer): no parameters."""

    kind: Literal["delete_contact"]


Action = Annotated[
    TagAction
    | EnrollAction
    | UnenrollAction
    | CommunityAction
    | UpdateContactAction
    | CancelSubscriptionAction
    | CancelScheduledAction
    | DeleteContactAction,
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
    "cancel_scheduled",
    "delete_contact",
)
# Actions on this service's own rows (the contact's waiting steps): no Systeme.io request, even in a dry run.
LOCAL_KINDS = frozenset({"cancel_scheduled"})
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
    "cancel_scheduled": CancelScheduledAction,
    "delete_contact": DeleteContactAction,
}
# Actions that take no parameters: `- delete_contact:` (or `{}`), with `after`/`approval` beside it if need be.
NO_PARAMS = frozenset({"delete_contact"})
# What an operator confirms unless the rule says otherwise: stopping someone's billing, erasing someone.
APPROVED_BY_DEFAULT = frozenset({"cancel_subscription", "delete_contact"})


def default_approval(kind: str) -> Approval:
    """An action's approval when neither it nor its rule says."""
    return "required" if kind in APPROVED_BY_DEFAULT else "auto"


# `- tag: NAME` is short for `- tag: {name: NAME}`; likewise for the other one-parameter actions.
SHORTHAND = {
    "tag": "name",
    "untag": "name",
    "unenroll": "course",
    "add_to_community": "community",
    "remove_from_community": "community",
    "cancel_subscription": "subscription",
    "cancel_scheduled": "rule",
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
    # The Systeme.io account its actions go to (a name under `accounts:`); default: its source's, else the settings'.
    account: str | None = None
    # Which runs go first when the account's quota is short; default: `high` if it grants access, else `normal`.
    priority: PriorityName | None = None
    actions: tuple[Action, ...] = Field(min_length=1)

    @property
    def effective_priority(self) -> PriorityName:
        if self.priority is not None:
            return self.priority
        return "high" if any(a.kind in GRANTING_KINDS for a in self.actions) else "normal"

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
        tag_conditions = bool(self.unless_tagged or self.only_if_tagged)
        kinds = [a.kind for a in self.actions]
        problem = contact_problem(kinds, has_contact=self.contact is not None, tag_conditions=tag_conditions)
        if problem:
            raise ValueError(problem)
        return self


def contact_problem(kinds: Sequence[str], *, has_contact: bool, tag_conditions: bool) -> str | None:
    """Why a rule needs a `contact` it lacks; also called by the loader when other problems stop validation."""
    if has_contact:
        return None
    needing = sorted({k for k in kinds if k in CONTACT_KINDS})
    if needing:
        return f"actions {', '.join(needing)} act on a contact, but the rule has no `contact`"
    if tag_conditions:
        return "`unless_tagged` and `only_if_tagged` need a `contact` to look at"
    return None


# The account of the settings (MATON_API_KEY / SYSTEME_API_KEY): what rules act on unless they name another.
DEFAULT_ACCOUNT = "default"


class RulesFile(Frozen):
    version: Literal[1]
    accounts: dict[str, AccountConfig] = Field(default_factory=dict)
    sources: dict[str, SourceConfig]
    rules: tuple[Rule, ...] = ()

    def secret_values(self) -> set[str]:
        """Source secrets and tokens, and accounts' API keys, for the log scrubber."""
        values = {s for source in self.sources.values() for s in source.secret}
        values |= {source.token for source in self.sources.values() if source.token}
        values |= {a.api_key for a in self.accounts.values() if a.api_key}
        return values

    def account_of(self, rule: Rule, source: str) -> str:
        config = self.sources.get(source)
        return rule.account or (config.account if config else None) or DEFAULT_ACCOUNT
