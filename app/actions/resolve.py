"""Names of tags, courses and communities to ids, through the account's shared name cache."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.actions.params import ActionParams, CommunityParams, CourseParams, EnrollParams, TagParams
from app.store.convergence import reference
from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError


def as_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


def same_tag(a: str, b: str) -> bool:
    """Tag names as a seller reads them: `VIP`, `vip` and ` Vip ` are one tag."""
    return a.strip().casefold() == b.strip().casefold()


async def _lookup(
    api: SystemeSession, kind: str, name: str, path: str, params: dict[str, Any], *, fold: bool = False
) -> int | None:
    """The id of the item named `name`; `fold`: matched case-insensitively, an exact match winning over others."""
    cached = await api.client.names.get(kind, name)
    if cached is not None:
        return cached
    folded: int | None = None
    async for item in api.paginate(path, params):
        found = str(item.get("name", "")).strip()
        if found == name:
            folded = int(item["id"])
            break
        if fold and folded is None and same_tag(found, name):
            folded = int(item["id"])  # kept unless an exact match comes later
    if folded is not None:
        await api.client.names.put(kind, name, folded)
    return folded


def tag_name(params: TagParams) -> str | None:
    """The tag's name when the rule names it (None when it gives an id)."""
    if params.id is not None:
        return None
    name = (params.name or "").strip()
    if not name:
        raise PermanentApiError("the tag name rendered empty")
    return name


async def tag_id(api: SystemeSession, params: TagParams, *, create: bool) -> int | None:
    """The tag's id; a named tag that does not exist is created when `create` (tagging), else None."""
    name = tag_name(params)
    if name is None:
        return params.id
    found = await _lookup(api, "tag", name, "/api/tags", {"query": name}, fold=True)
    if found is not None or not create:
        return found
    response = await api.request("POST", "/api/tags", body={"name": name}, allow=(422,))
    if response.status_code == 422:
        # Created meanwhile by another worker, or refused for a reason worth showing.
        await api.client.names.drop("tag", name)
        found = await _lookup(api, "tag", name, "/api/tags", {"query": name}, fold=True)
        if found is None:
            raise PermanentApiError(f"creating tag {name!r} was refused: 422 {problem(response)}", status=422)
        return found
    created = int(response.json()["id"])
    await api.client.names.put("tag", name, created)
    return created


async def course_id(api: SystemeSession, course: Any) -> int:
    found = as_id(course)
    if found is None:
        found = await _lookup(api, "course", str(course).strip(), "/api/school/courses", {})
    if found is None:
        raise PermanentApiError(f"no course named {course!r} in this Systeme.io account")
    return found


async def community_id(api: SystemeSession, community: Any) -> int:
    found = as_id(community)
    if found is None:
        found = await _lookup(api, "community", str(community).strip(), "/api/community/communities", {})
    if found is None:
        raise PermanentApiError(f"no community named {community!r} in this Systeme.io account")
    return found


async def forget_names(api: SystemeSession, params: ActionParams) -> None:
    """Drop the cached ids of the names an action used: an answer said one of them is wrong."""
    cache = api.client.names
    if isinstance(params, TagParams) and params.name and params.id is None:
        await cache.drop("tag", params.name.strip())
    if isinstance(params, EnrollParams | CourseParams) and as_id(params.course) is None:
        await cache.drop("course", str(params.course).strip())
    if isinstance(params, CommunityParams) and as_id(params.community) is None:
        await cache.drop("community", str(params.community).strip())


async def same_target(api: SystemeSession, kind: str, mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Two steps (as stored) about the same tag, course or community: as the rules name them, or, when one names
    it and the other gives its id, by the id the name stands for (a lookup the name cache usually answers)."""
    a, b = reference(kind, mine), reference(kind, theirs)
    if a is None or b is None or a == b:
        return a is not None and a == b
    if kind in ("tag", "untag"):
        if (mine.get("id") is None) == (theirs.get("id") is None):
            return False  # two names, or two ids, that differ
        try:
            tags = [TagParams.model_validate(p) for p in (mine, theirs)]
        except ValidationError:
            return False  # a row another version wrote: not the same tag as far as we can tell
        return await tag_id(api, tags[0], create=False) == await tag_id(api, tags[1], create=False)
    if (as_id(a) is None) == (as_id(b) is None):
        return False
    lookup = course_id if kind in ("enroll", "unenroll") else community_id
    field = "course" if kind in ("enroll", "unenroll") else "community"
    return await lookup(api, mine[field]) == await lookup(api, theirs[field])
