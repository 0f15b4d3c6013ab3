"""The Systeme.io calls a planned action would make, described without calling anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from app.actions.steps import REVOKING
from app.rules.engine import PlannedAction
from app.rules.schema import LOCAL_KINDS


@dataclass(frozen=True)
class PlannedCall:
    method: str
    path: str
    body: dict[str, Any] | None = None
    # True: it would change the account; False: a no-op; None: unknown without reading the account (--live).
    change: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contact_calls(contact: dict[str, Any]) -> list[PlannedCall]:
    email = contact["email"]
    calls = [PlannedCall("GET", f"/api/contacts?email={email}", change=False, note="find the contact")]
    body: dict[str, Any] = {"email": email}
    if contact.get("fields"):
        body["fields"] = [{"slug": k, "value": v} for k, v in contact["fields"].items()]
    calls.append(PlannedCall("POST", "/api/contacts", body, note="create it when missing"))
    if contact.get("fields") and contact.get("update") != "never":
        calls.append(
            PlannedCall(
                "PATCH",
                "/api/contacts/{contact}",
                {"fields": body["fields"]},
                note=f"update fields ({contact.get('update')})",
            )
        )
    return calls


def _step_calls(kind: str, params: dict[str, Any]) -> list[PlannedCall]:
    tag = params.get("name") or params.get("id")
    course, community = params.get("course"), params.get("community")
    match kind:
        case "tag":
            return [
                PlannedCall(
                    "POST",
                    "/api/contacts/{contact}/tags",
                    {"tagId": tag},
                    note="unless already tagged; the tag is created when missing",
                )
            ]
        case "untag":
            return [PlannedCall("DELETE", f"/api/contacts/{{contact}}/tags/{{{tag}}}", note="if tagged")]
        case "enroll":
            body = {"contactId": "{contact}", "accessType": params.get("access", "full_access")}
            if params.get("modules"):
                body["modules"] = params["modules"]
            return [
                PlannedCall("POST", f"/api/school/courses/{course}/enrollments", body, note="unless already enrolled")
            ]
        case "unenroll":
            return [
                PlannedCall(
                    "DELETE",
                    f"/api/school/enrollments/{{enrollment in course {course}}}",
                    note="each enrollment, if any",
                )
            ]
        case "add_to_community":
            return [
                PlannedCall(
                    "POST",
                    f"/api/community/communities/{community}/memberships",
                    {"contactId": "{contact}"},
                    note="unless already a member",
                )
            ]
        case "remove_from_community":
            return [
                PlannedCall(
                    "DELETE",
                    f"/api/community/memberships/{{membership in community {community}}}",
                    note="each membership, if any",
                )
            ]
        case "update_contact":
            fields = [{"slug": k, "value": v} for k, v in params.get("fields", {}).items() if v]
            return [PlannedCall("PATCH", "/api/contacts/{contact}", {"fields": fields}, note="fields that differ")]
        case "cancel_subscription":
            sid = params.get("subscription")
            return [
                PlannedCall(
                    "POST",
                    f"/api/payment/subscriptions/{sid}/cancel",
                    {"cancel": params.get("when")},
                    note="unless already cancelled",
                )
            ]
    return []


def describe(action: PlannedAction) -> list[PlannedCall]:
    """The writes an action would make, in order, with the contact steps first."""
    if action.kind in LOCAL_KINDS:
        return []  # it acts on this service's own rows
    if action.kind == "delete_contact" and action.contact:
        email = action.contact["email"]
        return [
            PlannedCall("GET", f"/api/contacts?email={email}", change=False, note="find the contact"),
            PlannedCall("DELETE", "/api/contacts/{contact}", note="if found; never creates it"),
        ]
    if action.kind in REVOKING and action.contact:
        # Taking something away never creates the contact: with none found, the step is done.
        email = action.contact["email"]
        note = "find the contact; never creates it"
        find = PlannedCall("GET", f"/api/contacts?email={email}", change=False, note=note)
        return [find, *_step_calls(action.kind, action.params)]
    calls = _contact_calls(action.contact) if action.contact else []
    return calls + _step_calls(action.kind, action.params)
