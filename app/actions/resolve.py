"""Names of tags, courses and communities to ids, through the account's shared name cache."""

from __future__ import annotations

from typing import Any

from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError


def as_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


async def _lookup(api: SystemeSession, kind: str, name: str, path: str, params: dict[str, Any]) -> int | None:
    cached = await api.client.names.get(kind, name)
    if cached is not None:
        return cached
    async for item in api.paginate(path, params):
        if str(item.get("name", "")).strip() == name:
            await api.client.names.put(kind, name, int(item["id"]))
            return int(item["id"])
    return None


def tag_name(params: dict[str, Any]) -> str | None:
    """The tag's name when the rule names it (None when it gives an id)."""
    if params.get("id") is not None:
        return None
    name = str(params.get("name") or "").strip()
    if not name:
        raise PermanentApiError("the tag name rendered empty")
    return name


async def tag_id(api: SystemeSession, params: dict[str, Any], *, create: bool) -> int | None:
    """The tag's id; a named tag that does not exist is created when `create` (tagging), else None."""
    name = tag_name(params)
    if name is None:
        return int(params["id"])
    found = await _lookup(api, "tag", name, "/api/tags", {"query": name})
    if found is not None or not create:
        return found
    response = await api.request("POST", "/api/tags", body={"name": name}, allow=(422,))
    if response.status_code == 422:
        # Created meanwhile by another worker, or refused for a reason worth showing.
        await api.client.names.drop("tag", name)
        found = await _lookup(api, "tag", name, "/api/tags", {"query": name})
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


async def forget_names(api: SystemeSession, params: dict[str, Any]) -> None:
    """Drop the cached ids of the names an action used: an answer said one of them is wrong."""
    cache = api.client.names
    if params.get("name") and params.get("id") is None:
        await cache.drop("tag", str(params["name"]).strip())
    for kind in ("course", "community"):
        if params.get(kind) is not None and as_id(params[kind]) is None:
            await cache.drop(kind, str(params[kind]).strip())
