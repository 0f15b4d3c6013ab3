"""The courses and communities the rules in force refer to, for one account: the enrollments and memberships a sync
reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.rules.schema import CommunityAction, EnrollAction, RulesFile, UnenrollAction


@dataclass
class Targets:
    courses: set[int | str] = field(default_factory=set)  # ids, or names to resolve
    communities: set[int | str] = field(default_factory=set)
    # Templated references ("{{ event.course }}"): only known when an event renders them, so not read ahead.
    templated: set[str] = field(default_factory=set)


def _add(found: set[int | str], templated: set[str], value: int | str) -> None:
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        templated.add(value)
        return
    text = str(value).strip()
    found.add(int(text) if text.isdigit() else text)


def targets(rules: RulesFile | None, account: str) -> Targets:
    """What the enabled rules acting on `account` enroll in, unenroll from, add to or remove from."""
    found = Targets()
    if rules is None:
        return found
    for rule in rules.rules:
        if not rule.enabled or not any(rules.account_of(rule, on.split("/", 1)[0]) == account for on in rule.on):
            continue
        for action in rule.actions:
            if isinstance(action, EnrollAction | UnenrollAction):
                _add(found.courses, found.templated, action.course)
            elif isinstance(action, CommunityAction):
                _add(found.communities, found.templated, action.community)
    return found
