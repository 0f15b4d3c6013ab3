"""Course enrollments and community memberships: granted once, revoked by the ids we recorded when granting."""

from __future__ import annotations

import time
from typing import Any

from app.actions.context import StepContext
from app.actions.mirror import Access, Known
from app.actions.params import CommunityParams, CourseParams, EnrollParams
from app.actions.resolve import community_id, course_id
from app.systeme.errors import TransientApiError

# Between two looks for a membership that was accepted (202) but is not listed yet.
LISTING_RETRY_SECONDS = 15.0


class NotListedYet(TransientApiError):
    """A membership we asked for is not listed yet: look again shortly (not held against the action)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=LISTING_RETRY_SECONDS, throttled=True)


async def _listed(ctx: StepContext, path: str, params: dict[str, Any], key: str, wanted: int) -> list[int]:
    """Ids of the contact's enrollments (or memberships) in one course (or community)."""
    contact = int(params["contact"])
    found = []
    async for item in ctx.api.paginate(path, params):
        # Filter again on our side: a filter the API ignored must not make us delete someone else's access.
        if (item.get(key) or {}).get("id") in (wanted, None) and (item.get("contact") or {}).get("id") in (
            contact,
            None,
        ):
            found.append(int(item["id"]))
    return found


def _known(ctx: StepContext, facts: dict[int, Access], created: bool, target: int) -> Access | str:
    """What the mirror may decide about one course or community: its state, or "unknown"."""
    if not ctx.trusted():
        return "unknown"
    if target in facts:
        return facts[target]
    return False if created else "unknown"


async def enroll(ctx: StepContext, params: EnrollParams) -> str:
    known = await ctx.contact()
    course = await course_id(ctx.api, params.course)
    state = _known(ctx, known.courses, known.created, course)
    if state == "unknown":
        found = await _listed(
            ctx, "/api/school/enrollments", {"contact": known.contact_id, "course": course}, "course", course
        )
        state = found[0] if found else False
        known.courses[course] = state
    if state is not False:
        return "already enrolled"
    body: dict[str, Any] = {"contactId": known.contact_id, "accessType": params.access}
    if params.modules:
        body["modules"] = list(params.modules)
    response = await ctx.write("POST", f"/api/school/courses/{course}/enrollments", body)
    enrollment = _id_of(response.json() if response.content else None)
    known.courses[course] = enrollment
    if enrollment is not None:
        known.grants[f"course:{course}"] = enrollment
    return "enrolled"


async def unenroll(ctx: StepContext, params: CourseParams) -> str:
    known = await ctx.contact()
    course = await course_id(ctx.api, params.course)
    return await _revoke(
        ctx,
        known,
        key=f"course:{course}",
        facts=known.courses,
        target=course,
        listing=("/api/school/enrollments", {"contact": known.contact_id, "course": course}, "course"),
        delete="/api/school/enrollments/{}",
        done=("unenrolled", "was not enrolled"),
    )


async def add_to_community(ctx: StepContext, params: CommunityParams) -> str:
    known = await ctx.contact()
    community = await community_id(ctx.api, params.community)
    state = _known(ctx, known.communities, known.created, community)
    if state == "unknown":
        query = {"contact": known.contact_id, "community": community}
        found = await _listed(ctx, "/api/community/memberships", query, "community", community)
        state = found[0] if found else False
        known.communities[community] = state
    if state is not False:
        return "already a member"
    # 202 Accepted and no body: the membership's id is not known until it is listed.
    await ctx.write("POST", f"/api/community/communities/{community}/memberships", {"contactId": known.contact_id})
    known.communities[community] = None
    # When we asked (Unix seconds): a revoke soon after may not find it listed yet, and looks again for a while.
    known.grants[f"joined:{community}"] = int(time.time())
    return "added to community"


async def remove_from_community(ctx: StepContext, params: CommunityParams) -> str:
    known = await ctx.contact()
    community = await community_id(ctx.api, params.community)
    return await _revoke(
        ctx,
        known,
        key=f"community:{community}",
        facts=known.communities,
        target=community,
        listing=("/api/community/memberships", {"contact": known.contact_id, "community": community}, "community"),
        delete="/api/community/memberships/{}",
        done=("removed from community", "was not a member"),
        pending=f"joined:{community}",
    )


async def _revoke(
    ctx: StepContext,
    known: Known,
    *,
    key: str,
    facts: dict[int, Access],
    target: int,
    listing: tuple[str, dict[str, Any], str],
    delete: str,
    done: tuple[str, str],
    pending: str | None = None,
) -> str:
    """Delete the recorded grant by its id when we have it; otherwise list what the contact has and delete that.

    `pending`: the grant key of a request the API accepted but may not list yet (a membership); while it is recent,
    finding nothing listed means "look again shortly", not "nothing to remove".
    """
    granted = known.grants.get(key)
    if granted is not None and not ctx.careful:
        await ctx.write("DELETE", delete.format(granted))
        ids = [granted]
    else:
        state = _known(ctx, facts, known.created, target)
        if state is False:
            return done[1]
        if isinstance(state, int) and not isinstance(state, bool):
            ids = [state]
        else:
            path, query, kind = listing
            ids = await _listed(ctx, path, query, kind, target)
            asked = known.grants.get(pending) if pending else None
            if not ids and asked is not None and time.time() - asked < ctx.listing_wait:
                raise NotListedYet(
                    f"the membership asked for at {time.strftime('%H:%M:%S', time.gmtime(asked))} UTC is not listed"
                    f" yet (Systeme.io creates it asynchronously): looking again in {LISTING_RETRY_SECONDS:.0f} s"
                )
        for item in ids:
            await ctx.write("DELETE", delete.format(item), missing_ok=True)
    facts[target] = False
    known.grants.pop(key, None)
    if pending:
        known.grants.pop(pending, None)
    return done[0] if ids else done[1]


def _id_of(answer: Any) -> int | None:
    if isinstance(answer, dict) and str(answer.get("id", "")).isdigit():
        return int(answer["id"])
    return None
