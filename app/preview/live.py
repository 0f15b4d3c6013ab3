"""`check --live`: the course, community and tag references of a rules file, looked up (GET only)."""

from __future__ import annotations

from app.rules.loader import LoadedRules
from app.rules.problems import Problem, Severity
from app.rules.schema import CommunityAction, EnrollAction, TagAction, UnenrollAction
from app.systeme.client import SystemeSession


def _literal(value: object) -> bool:
    return not (isinstance(value, str) and ("{{" in value or "{%" in value))


async def _index(api: SystemeSession, path: str) -> tuple[set[int], set[str]]:
    ids, names = set(), set()
    async for item in api.paginate(path):
        ids.add(int(item["id"]))
        names.add(str(item.get("name", "")).strip())
    return ids, names


async def live_problems(loaded: LoadedRules, api: SystemeSession) -> list[Problem]:
    """References that do not exist in the account: courses and communities are errors, tags notices."""
    courses = await _index(api, "/api/school/courses")
    communities = await _index(api, "/api/community/communities")
    tags = await _index(api, "/api/tags")
    problems: list[Problem] = []
    for rule in loaded.file.rules:
        line, column = loaded.positions.get(rule.id, (1, 1))

        def report(message: str, severity: Severity = "error") -> None:
            problems.append(Problem(loaded.path, line, column, f"rule '{rule.id}'", message, severity))  # noqa: B023

        for action in rule.actions:
            if isinstance(action, EnrollAction | UnenrollAction) and _literal(action.course):
                if not _exists(action.course, courses):
                    report(f"course {action.course!r} does not exist in the connected account")
            elif isinstance(action, CommunityAction) and _literal(action.community):
                if not _exists(action.community, communities):
                    report(f"community {action.community!r} does not exist in the connected account")
            elif isinstance(action, TagAction) and action.kind == "tag" and _literal(action.name or ""):
                if not _exists(action.id if action.id is not None else action.name or "", tags):
                    report(f"tag {action.name or action.id!r} does not exist yet; it is created on first use", "notice")
    return problems


def _exists(reference: int | str, index: tuple[set[int], set[str]]) -> bool:
    ids, names = index
    text = str(reference).strip()
    return int(text) in ids if text.isdigit() else text in names
