"""What each action does in Systeme.io. Every step checks first, so a retry or a replay changes nothing twice.

The checks are read from the contact mirror while it is fresh, and from the API otherwise; what a step learns or
grants is written back to the mirror (`ctx.handle.known`), which the run stores with the step's result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.actions.access import add_to_community, enroll, remove_from_community, unenroll
from app.actions.contacts import send_contact
from app.actions.context import StepContext
from app.actions.mirror import contact_tags
from app.actions.params import DeleteContactParams, FieldsParams, SubscriptionParams, TagParams
from app.actions.resolve import tag_id, tag_name
from app.systeme.client import MIN_LIMIT, SystemeSession, problem
from app.systeme.errors import PermanentApiError
from app.systeme.values import screen

# Each step takes the model that app.actions.params.PARAMS gives for its kind (the runner parsed it).
Step = Callable[[StepContext, Any], Awaitable[str]]


async def tag(ctx: StepContext, params: TagParams) -> str:
    known = await ctx.contact(facts=True)
    tid = await tag_id(ctx.api, params, create=True)
    assert tid is not None
    if tid in known.tags:
        return "already tagged"
    await ctx.write("POST", f"/api/contacts/{known.contact_id}/tags", {"tagId": tid})
    known.set_tag(tid, tag_name(params) or str(tid))
    known.grants[f"tag:{tag_name(params) or tid}"] = tid
    return "tagged"


async def untag(ctx: StepContext, params: TagParams) -> str:
    name = tag_name(params)
    key = f"tag:{name or params.id}"
    known = await ctx.contact()
    granted = known.grants.get(key)
    if granted is not None and not ctx.careful:
        # The very tag we added, by its id: a rename in Systeme.io since does not matter.
        await ctx.write("DELETE", f"/api/contacts/{known.contact_id}/tags/{granted}")
        known.set_tag(granted, None)
        known.grants.pop(key, None)
        return "untagged"
    known = await ctx.contact(facts=True)
    tid = await tag_id(ctx.api, params, create=False)
    if tid is None or tid not in known.tags:
        return "was not tagged"
    await ctx.write("DELETE", f"/api/contacts/{known.contact_id}/tags/{tid}", missing_ok=True)
    known.set_tag(tid, None)
    known.grants.pop(key, None)
    return "untagged"


async def update_contact(ctx: StepContext, params: FieldsParams) -> str:
    known = await ctx.contact(facts=True)
    wanted = {slug: value for slug, value in params.fields.items() if value and known.fields.get(slug) != value}
    changes, _, dropped = screen(wanted, None)
    if dropped and ctx.handle is not None:
        ctx.handle.notes.append(f"not sent, Systeme.io would refuse it: {', '.join(dropped)}")
    if not changes:
        return "fields already up to date" if not dropped else "nothing left to update"
    body = {"fields": [{"slug": slug, "value": value} for slug, value in changes.items()]}
    path = f"/api/contacts/{known.contact_id}"
    response, refused = await send_contact(ctx.api, "PATCH", path, body, content_type="application/merge-patch+json")
    if ctx.handle is not None:
        ctx.handle.notes += refused
    if response is None:
        return "nothing left to update"
    if response.status_code == 422:
        raise PermanentApiError(f"PATCH {path} answered 422: {problem(response)}", status=422)
    known.update(response.json())
    return "fields updated"


# Statuses after which there is nothing left to cancel (Subscription.status in the API).
_ENDED = {"cancelled": "already cancelled", "completed": "already completed", "incomplete_expired": "already expired"}


NO_PAYMENTS = "payments are not set up in this account"


def _ended(subscription: dict[str, Any]) -> str | None:
    """Why there is nothing left to cancel, or None. A cancel at the end of the billing period leaves the
    subscription `active` with `cancelledAt` set: that is cancelled already, not a failure to repeat."""
    if subscription.get("status") in _ENDED:
        return _ENDED[subscription["status"]]
    if subscription.get("cancelledAt"):
        return "already cancelled (at the end of its billing period)"
    return None


async def _subscription(ctx: StepContext, contact_id: int, sid: int) -> dict[str, Any] | None:
    # The documented minimum page size: the subscriptions list refuses limits the other lists accept.
    pages = ctx.api.paginate("/api/payment/subscriptions", {"contact": contact_id}, limit=MIN_LIMIT)
    try:
        async for item in pages:
            if item.get("id") == sid:
                return item
    except PermanentApiError as exc:
        if exc.status == 404:
            raise PermanentApiError(f"{NO_PAYMENTS} ({exc.message})", status=404) from exc
        raise
    return None


async def cancel_subscription(ctx: StepContext, params: SubscriptionParams) -> str:
    raw = str(params.subscription or "").strip()
    if not raw.isdigit() or len(raw) > 18:
        raise PermanentApiError(f"subscription id {raw[:40]!r} is not a number")
    sid = int(raw)
    owner = None
    if ctx.spec is not None:
        # Destructive: only cancel a subscription that belongs to the contact this rule is about.
        owner = await ctx.contact()
        match = await _subscription(ctx, owner.contact_id, sid)
        if match is None:
            raise PermanentApiError(f"subscription {sid} is not one of {ctx.spec.get('email')}'s: nothing cancelled")
        if (ended := _ended(match)) is not None:
            return ended
    when = params.when
    path = f"/api/payment/subscriptions/{sid}/cancel"
    response = await ctx.api.request("POST", path, body={"cancel": when}, allow=(404, 422))
    if response.status_code == 404:
        why = NO_PAYMENTS if owner is not None else f"subscription {sid} was not found, or {NO_PAYMENTS}"
        raise PermanentApiError(f"{why} (POST {path} answered 404: {problem(response)})", status=404)
    if response.status_code == 422:
        # Decided from the subscription as the API reports it, never from the words of the error.
        after = await _subscription(ctx, owner.contact_id, sid) if owner is not None else None
        if after is not None and (ended := _ended(after)) is not None:
            return ended
        raise PermanentApiError(f"cancelling subscription {sid} was refused: 422 {problem(response)}", status=422)
    return "cancelled now" if when == "Now" else "cancelled at the end of the billing period"


NOTHING_TO_ERASE = "not found in Systeme.io: nothing to erase"


async def _erasable(api: SystemeSession, email: str) -> dict[str, Any] | None:
    """The contact whose address is `email` (whatever its case), read through every page of the search; None only
    when the search answered nothing at all. Contacts that are all someone else's prove nothing: the filter was not
    what we thought, and "nothing to erase" would leave the person's contact there."""
    wanted, others = email.strip().lower(), 0
    async for item in api.paginate("/api/contacts", {"email": email}):
        if str(item.get("email", "")).strip().lower() == wanted:
            return item
        others += 1
    if others:
        raise PermanentApiError(
            f"could not confirm that {email} has no contact in Systeme.io: the search by email answered {others} "
            "other contacts and not theirs"
        )
    return None


async def delete_contact(ctx: StepContext, params: DeleteContactParams) -> str:
    """Erase the contact in Systeme.io; a contact that is not there is erased already."""
    if ctx.handle is None:
        raise PermanentApiError("this action needs a contact, but its rule has none")
    # Found by its address every time, never from the mirror: what is erased must be the person's contact now.
    found = await _erasable(ctx.api, ctx.handle.email)
    if found is None:
        ctx.handle.erased()
        return NOTHING_TO_ERASE
    response = await ctx.api.request("DELETE", f"/api/contacts/{found['id']}", allow=(404,))
    ctx.handle.erased()
    if response.status_code == 404:
        return f"{NOTHING_TO_ERASE} (contact {found['id']} was deleted meanwhile)"
    return f"contact {found['id']} deleted in Systeme.io"


STEPS: dict[str, Step] = {
    "tag": tag,
    "untag": untag,
    "enroll": enroll,
    "unenroll": unenroll,
    "add_to_community": add_to_community,
    "remove_from_community": remove_from_community,
    "update_contact": update_contact,
    "cancel_subscription": cancel_subscription,
    "delete_contact": delete_contact,
}
# Steps that must not create the contact to judge a tag condition: erasing a contact that is not there is done.
ERASING = frozenset({"delete_contact"})
# Steps that only take something away: for a contact that is not there they are done, and never create it.
REVOKING = frozenset({"untag", "unenroll", "remove_from_community", "cancel_subscription", *ERASING})


async def unmet_condition(ctx: StepContext, kind: str) -> str | None:
    """Why the rule's `unless_tagged` / `only_if_tagged` stops this action now, read from the account."""
    spec = ctx.spec
    if not spec or not (spec.get("unless_tagged") or spec.get("only_if_tagged")):
        return None
    if kind in ERASING:
        assert ctx.handle is not None
        # The contact the erasure would delete, found as it finds it (every page, the exact address).
        found = await _erasable(ctx.api, ctx.handle.email)
        return tag_condition(spec, contact_tags(found)) if found is not None else None
    return tag_condition(spec, (await ctx.contact(facts=True)).tags)


def tag_condition(spec: dict[str, Any] | None, tags: dict[int, str]) -> str | None:
    """Why the rule's `unless_tagged` / `only_if_tagged` stops this action now, or None when it may run."""
    if not spec:
        return None
    # Matched as tag lookups are: case-insensitively, after trimming.
    names = {name.strip().casefold() for name in tags.values()}
    unless, only = (str(spec.get(key) or "").strip().casefold() for key in ("unless_tagged", "only_if_tagged"))
    if unless and unless in names:
        return f"skipped: the contact is tagged {spec['unless_tagged']!r} (unless_tagged)"
    if only and only not in names:
        return f"skipped: the contact is not tagged {spec['only_if_tagged']!r} (only_if_tagged)"
    return None
