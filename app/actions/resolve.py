"""Names of tags, courses and communities to ids, cached per process for a few minutes."""

from __future__ import annotations

import time
from typing import Any

from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError

NAME_TTL_SECONDS = 300.0


def _as_id(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else None


async def _lookup(api: SystemeSession, kind: str, name: str, path: str, params: dict[str, Any]) -> int | None:
    cache = api.client.names
    hit = cache.get((kind, name))
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    async for item in api.paginate(path, params):
        if str(item.get("name", "")).strip() == name:
            cache[(kind, name)] = (int(item["id"]), time.monotonic() + NAME_TTL_SECONDS)
            return int(item["id"])
    return None


async def tag_id(api: SystemeSession, params: dict[str, Any], *, create: bool) -> int | None:
    """The tag's id; a named tag that does not exist is created when `create` (tagging), else None."""
    if params.get("id") is not None:
        return int(params["id"])
    name = str(params.get("name") or "").strip()
    if not name:
        raise PermanentApiError("the tag name rendered empty")
    found = await _lookup(api, "tag", name, "/api/tags", {"query": name})
    if found is not None or not create:
        return found
    response = await api.request("POST", "/api/tags", body={"name": name}, allow=(422,))
    if response.status_code == 422:
        # Created meanwhile by another worker, or refused for a reason worth showing.
        api.client.names.pop(("tag", name), None)
        found = await _lookup(api, "tag", name, "/api/tags", {"query": name})
        if found is None:
            raise PermanentApiError(f"creating tag {name!r} was refused: 422 {problem(response)}", status=422)
        return found
    created = int(response.json()["id"])
    api.client.names[("tag", name)] = (created, time.monotonic() + NAME_TTL_SECONDS)
    return created


async def course_id(api: SystemeSession, course: Any) -> int:
    found = _as_id(course)
    if found is None:
        found = await _lookup(api, "course", str(course).strip(), "/api/school/courses", {})
    if found is None:
        raise PermanentApiError(f"no course named {course!r} in this Systeme.io account")
    return found


async def community_id(api: SystemeSession, community: Any) -> int:
    found = _as_id(community)
    if found is None:
        found = await _lookup(api, "community", str(community).strip(), "/api/community/communities", {})
    if found is None:
        raise PermanentApiError(f"no community named {community!r} in this Systeme.io account")
    return found
