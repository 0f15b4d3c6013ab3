"""What each action does in Systeme.io. Every step checks first, so a retry or a replay changes nothing twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.actions.resolve import community_id, course_id, tag_id
from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError

Step = Callable[[SystemeSession, dict[str, Any] | None, dict[str, Any]], Awaitable[str]]


def _contact_id(contact: dict[str, Any] | None) -> int:
    if contact is None:
        raise PermanentApiError("this action needs a contact, but none was resolved")
    return int(contact["id"])


def _has_tag(contact: dict[str, Any], tag: int) -> bool:
    return any(isinstance(t, dict) and t.get("id") == tag for t in contact.get("tags") or [])


async def tag(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    tid = await tag_id(api, params, create=True)
    assert tid is not None and contact is not None
    if _has_tag(contact, tid):
        return "already tagged"
    await api.request("POST", f"/api/contacts/{cid}/tags", body={"tagId": tid})
    return "tagged"


async def untag(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    tid = await tag_id(api, params, create=False)
    if tid is None or contact is None or not _has_tag(contact, tid):
        return "was not tagged"
    await api.request("DELETE", f"/api/contacts/{cid}/tags/{tid}", allow=(404,))
    return "untagged"


async def _enrollments(api: SystemeSession, contact: int, course: int) -> list[dict[str, Any]]:
    found = []
    async for item in api.paginate("/api/school/enrollments", {"contact": contact, "course": course}):
        # Filter again on our side: a filter the API ignored must not make us delete someone else's access.
        if (item.get("course") or {}).get("id") in (course, None) and (item.get("contact") or {}).get("id") in (
            contact,
            None,
        ):
            found.append(item)
    return found


async def enroll(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    course = await course_id(api, params["course"])
    if await _enrollments(api, cid, course):
        return "already enrolled"
    body: dict[str, Any] = {"contactId": cid, "accessType": params.get("access", "full_access")}
    if params.get("modules"):
        body["modules"] = [int(m) for m in params["modules"]]
    await api.request("POST", f"/api/school/courses/{course}/enrollments", body=body)
    return "enrolled"


async def unenroll(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    course = await course_id(api, params["course"])
    enrollments = await _enrollments(api, cid, course)
    for enrollment in enrollments:
        await api.request("DELETE", f"/api/school/enrollments/{enrollment['id']}", allow=(404,))
    return "unenrolled" if enrollments else "was not enrolled"


async def _memberships(api: SystemeSession, contact: int, community: int) -> list[dict[str, Any]]:
    found = []
    async for item in api.paginate("/api/community/memberships", {"contact": contact, "community": community}):
        if (item.get("community") or {}).get("id") in (community, None) and (item.get("contact") or {}).get("id") in (
            contact,
            None,
        ):
            found.append(item)
    return found


async def add_to_community(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    community = await community_id(api, params["community"])
    if await _memberships(api, cid, community):
        return "already a member"
    await api.request("POST", f"/api/community/communities/{community}/memberships", body={"contactId": cid})
    return "added to community"


async def remove_from_community(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    community = await community_id(api, params["community"])
    memberships = await _memberships(api, cid, community)
    for membership in memberships:
        await api.request("DELETE", f"/api/community/memberships/{membership['id']}", allow=(404,))
    return "removed from community" if memberships else "was not a member"


async def update_contact(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    cid = _contact_id(contact)
    assert contact is not None
    current = {f.get("slug"): f.get("value") for f in contact.get("fields") or [] if isinstance(f, dict)}
    changes = {
        slug: value for slug, value in (params.get("fields") or {}).items() if value and current.get(slug) != value
    }
    if not changes:
        return "fields already up to date"
    body = {"fields": [{"slug": slug, "value": value} for slug, value in changes.items()]}
    await api.request("PATCH", f"/api/contacts/{cid}", body=body, content_type="application/merge-patch+json")
    return "fields updated"


async def cancel_subscription(api: SystemeSession, contact: dict[str, Any] | None, params: dict[str, Any]) -> str:
    raw = str(params.get("subscription") or "").strip()
    if not raw.isdigit():
        raise PermanentApiError(f"subscription id {raw!r} is not a number")
    sid = int(raw)
    if contact is not None:
        # Destructive: only cancel a subscription that belongs to the contact this rule is about.
        owned = [s async for s in api.paginate("/api/payment/subscriptions", {"contact": contact["id"]})]
        match = next((s for s in owned if s.get("id") == sid), None)
        if match is None:
            raise PermanentApiError(f"subscription {sid} is not one of {contact.get('email')}'s: nothing cancelled")
        if match.get("status") == "cancelled":
            return "already cancelled"
    when = params.get("when", "WhenBillingPeriodEnds")
    response = await api.request(
        "POST", f"/api/payment/subscriptions/{sid}/cancel", body={"cancel": when}, allow=(422,)
    )
    if response.status_code == 422:
        if "cancel" in response.text.lower():
            return "already cancelled"
        raise PermanentApiError(f"cancelling subscription {sid} was refused: 422 {problem(response)}", status=422)
    return "cancelled"


STEPS: dict[str, Step] = {
    "tag": tag,
    "untag": untag,
    "enroll": enroll,
    "unenroll": unenroll,
    "add_to_community": add_to_community,
    "remove_from_community": remove_from_community,
    "update_contact": update_contact,
    "cancel_subscription": cancel_subscription,
}
