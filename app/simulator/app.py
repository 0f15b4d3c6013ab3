"""The simulator's HTTP surface: the Systeme.io paths systeme-flow uses, plus /_sim/ controls for tests."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.simulator import setup, strict
from app.simulator.callbacks import Callbacks
from app.simulator.maton import Connections, MatonControl
from app.simulator.query import date_filter, int_filter, page
from app.simulator.state import Account, Fault, Problem

Handler = Callable[[Request, Account], Awaitable[Any]]


async def _json(request: Request, *, media: str = "application/json") -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != media:
        raise Problem(415, f"The content-type must be {media}.")
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise Problem(400, "Syntax error in the JSON body") from exc
    if not isinstance(body, dict):
        raise Problem(400, "The body must be a JSON object")
    return body


async def contacts_list(request: Request, acc: Account) -> Any:
    items: Iterable[dict[str, Any]] = acc.contacts.values()
    if "email" in request.query_params and acc.email_filter != "ignored":
        email = request.query_params["email"].lower()
        items = [c for c in items if c["email"].lower() == email]
    # Strictly after and strictly before, at the API's resolution of whole seconds.
    after, before = date_filter(request, "registeredAfter"), date_filter(request, "registeredBefore")
    if after is not None:
        items = [c for c in items if datetime.fromisoformat(c["registeredAt"]) > after]
    if before is not None:
        items = [c for c in items if datetime.fromisoformat(c["registeredAt"]) < before]
    return page(request, items)


async def contacts_create(request: Request, acc: Account) -> Any:
    return JSONResponse(acc.create_contact(await _json(request)), status_code=201)


async def contact_get(request: Request, acc: Account) -> Any:
    return acc.contact(request.path_params["id"])


async def contact_patch(request: Request, acc: Account) -> Any:
    body = await _json(request, media="application/merge-patch+json")
    return acc.patch_contact(request.path_params["id"], body)


async def contact_delete(request: Request, acc: Account) -> Any:
    acc.delete_contact(request.path_params["id"])
    return Response(status_code=204)


async def tag_rename(request: Request, acc: Account) -> Any:
    return acc.rename_tag(request.path_params["id"], await _json(request))


async def tag_delete(request: Request, acc: Account) -> Any:
    acc.delete_tag(request.path_params["id"])
    return Response(status_code=204)


async def contact_tag_add(request: Request, acc: Account) -> Any:
    acc.add_contact_tag(request.path_params["id"], await _json(request))
    return Response(status_code=204)


async def contact_tag_remove(request: Request, acc: Account) -> Any:
    acc.remove_contact_tag(request.path_params["id"], request.path_params["tag"])
    return Response(status_code=204)


async def tags_list(request: Request, acc: Account) -> Any:
    needle = request.query_params.get("query", "").lower()
    return page(request, [t for t in acc.tags.values() if needle in t["name"].lower()])


async def tags_create(request: Request, acc: Account) -> Any:
    return JSONResponse(acc.create_tag(await _json(request)), status_code=201)


async def courses_list(request: Request, acc: Account) -> Any:
    return page(request, acc.courses.values())


async def enroll(request: Request, acc: Account) -> Any:
    return JSONResponse(acc.enroll(request.path_params["id"], await _json(request)), status_code=201)


async def enrollments_list(request: Request, acc: Account) -> Any:
    contact, course = int_filter(request, "contact"), int_filter(request, "course")
    items = [
        e
        for e in acc.enrollments.values()
        if contact in (None, e["contact"]["id"]) and course in (None, e["course"]["id"])
    ]
    return page(request, items)


async def enrollment_delete(request: Request, acc: Account) -> Any:
    if acc.enrollments.pop(int(request.path_params["id"]), None) is None:
        raise Problem(404, "Not Found")
    return Response(status_code=204)


async def communities_list(request: Request, acc: Account) -> Any:
    return page(request, acc.communities.values())


async def join(request: Request, acc: Account) -> Any:
    acc.join(request.path_params["id"], await _json(request))
    return Response(status_code=202)


async def memberships_list(request: Request, acc: Account) -> Any:
    contact, community = int_filter(request, "contact"), int_filter(request, "community")
    items = [
        m
        for m in acc.listed_memberships()
        if contact in (None, m["contact"]["id"]) and community in (None, m["community"]["id"])
    ]
    return page(request, items)


async def membership_delete(request: Request, acc: Account) -> Any:
    key = int(request.path_params["id"])
    if key not in {m["id"] for m in acc.listed_memberships()}:
        raise Problem(404, "Not Found")  # not there yet either, while it is still being created
    del acc.memberships[key]
    return Response(status_code=204)


def _payments(acc: Account) -> None:
    if not acc.payments:
        raise Problem(404, "Not Found")


async def subscriptions_list(request: Request, acc: Account) -> Any:
    _payments(acc)
    limit = request.query_params.get("limit", "10")
    if limit.isdigit() and int(limit) > acc.subscriptions_limit:
        message = "Wrong value of pagination limit parameter"
        violations = [{"propertyPath": "pagination.limit", "message": message, "code": "invalid"}]
        raise Problem(422, f"pagination.limit: {message}", violations)
    contact = int_filter(request, "contact")
    if contact is None:
        raise Problem(400, "The contact filter is required.")
    public = (
        {k: v for k, v in s.items() if k not in ("contactId", "cancelRequested")}
        for s in acc.subscriptions.values()
        if s["contactId"] == contact
    )
    return page(request, public)


async def subscription_cancel(request: Request, acc: Account) -> Any:
    _payments(acc)
    acc.cancel(request.path_params["id"], await _json(request))
    return Response(status_code=204)


class Simulator:
    """An ASGI app with its account in `self.account`, so tests can read and seed the state directly."""

    def __init__(self, *, api_key: str | None = None, rate_limit: int = 0, window_seconds: float = 60.0) -> None:
        self.api_key = api_key
        self.account = Account(rate_limit=rate_limit, window_seconds=window_seconds)
        # When each API request arrived (kept apart from `calls`, whose entries tests compare whole).
        self.times: list[float] = []
        api = [
            ("/api/contacts", "GET", contacts_list),
            ("/api/contacts", "POST", contacts_create),
            ("/api/contacts/{id:int}", "GET", contact_get),
            ("/api/contacts/{id:int}", "PATCH", contact_patch),
            ("/api/contacts/{id:int}", "DELETE", contact_delete),
            ("/api/contacts/{id:int}/tags", "POST", contact_tag_add),
            ("/api/contacts/{id:int}/tags/{tag}", "DELETE", contact_tag_remove),
            ("/api/tags", "GET", tags_list),
            ("/api/tags", "POST", tags_create),
            ("/api/tags/{id}", "PUT", tag_rename),
            ("/api/tags/{id}", "DELETE", tag_delete),
            ("/api/school/courses", "GET", courses_list),
            ("/api/school/courses/{id}/enrollments", "POST", enroll),
            ("/api/school/enrollments", "GET", enrollments_list),
            ("/api/school/enrollments/{id:int}", "DELETE", enrollment_delete),
            ("/api/community/communities", "GET", communities_list),
            ("/api/community/communities/{id}/memberships", "POST", join),
            ("/api/community/memberships", "GET", memberships_list),
            ("/api/community/memberships/{id:int}", "DELETE", membership_delete),
            ("/api/payment/subscriptions", "GET", subscriptions_list),
            ("/api/payment/subscriptions/{id}/cancel", "POST", subscription_cancel),
            *setup.routes(_json),
        ]
        # Maton's control API (connections), on the same port so one simulator stands in for both.
        self.connections = Connections()
        # Systeme.io webhooks sent back to registered URLs for the API's own writes.
        self.callbacks = Callbacks()
        routes = MatonControl(self.connections, lambda: self.api_key).routes()
        routes += [Route(path, self._wrap(handler), methods=[method]) for path, method, handler in api]
        routes += [
            Route("/_sim/state", self._state, methods=["GET"]),
            Route("/_sim/faults", self._faults, methods=["POST"]),
            Route("/_sim/rate-limit", self._rate_limit, methods=["POST"]),
            Route("/_sim/seed", self._seed, methods=["POST"]),
            *strict.controls(lambda: self.account),
        ]
        self.app = Starlette(routes=routes)

    def _authorised(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return self.api_key in (request.headers.get("x-api-key"), bearer)

    def _refusal(self, request: Request) -> Response | None:
        """What the key check, or (through Maton) the named connection's check, answers instead of the API."""
        if not self._authorised(request):
            return JSONResponse({"title": "Unauthorized", "detail": "Invalid API key"}, 401)
        connection = request.headers.get("maton-connection")
        refused = self.connections.refusal(connection) if connection is not None else None
        # The Maton proxy's own answer: no usable connection for the app.
        return JSONResponse({"error": refused}, 400) if refused else None

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            acc = self.account
            request.state.account = acc
            call: dict[str, Any] = {"method": request.method, "path": request.url.path, "query": str(request.url.query)}
            self.times.append(time.time())
            acc.calls.append(call)
            refusal = self._refusal(request)
            if refusal is not None:
                response: Response = refusal
            else:
                allowed, remaining, refill = acc.take_quota()
                fault = acc.take_fault(request.method, request.url.path) if allowed else None
                if not allowed:
                    response = JSONResponse(
                        {"title": "Too Many Requests", "detail": "Rate limit exceeded"},
                        status_code=429,
                        headers={"Retry-After": str(max(1, math.ceil(refill)))},
                    )
                elif acc.refuses(request.url.path):
                    response = JSONResponse(strict.FORBIDDEN_BODY, 403, media_type="application/problem+json")
                elif fault is not None and fault.status:
                    await asyncio.sleep(fault.delay)
                    response = JSONResponse({"title": "Simulated failure", "detail": fault.detail}, fault.status)
                else:
                    if fault is not None:
                        # A slow server: the request has arrived whole and is acted on even if the client leaves.
                        await request.body()
                        await asyncio.sleep(fault.delay)
                        while fault.release is not None and not fault.release.is_set():
                            await asyncio.sleep(0.02)
                    response = await self._answer(handler, request)
                    await self.callbacks.observe(request, response, acc)
                limit = acc.rate_limit or 1_000_000
                response.headers["X-RateLimit-Limit"] = str(limit)
                response.headers["X-RateLimit-Remaining"] = str(remaining if acc.rate_limit else limit)
                response.headers["X-RateLimit-Refill"] = str(max(0, math.ceil(refill)))
            call["status"] = response.status_code
            return response

        return endpoint

    async def _answer(self, handler: Handler, request: Request) -> Response:
        try:
            result = await handler(request, self.account)
        except Problem as problem:
            return JSONResponse(problem.body(), status_code=problem.status, media_type="application/problem+json")
        return result if isinstance(result, Response) else JSONResponse(result)

    async def _state(self, request: Request) -> Response:
        acc = self.account
        return JSONResponse(
            {
                "contacts": list(acc.contacts.values()),
                "tags": list(acc.tags.values()),
                "enrollments": list(acc.enrollments.values()),
                "memberships": list(acc.memberships.values()),
                "subscriptions": list(acc.subscriptions.values()),
                "webhooks": list(acc.webhooks.values()),
                "fields": [{"slug": slug, "fieldName": name} for slug, name in acc.fields.items()],
                "connections": list(self.connections.items.values()),
                "calls": acc.calls,
                # When each call arrived (Unix seconds), in the order of `calls`.
                "times": self.times,
                "throttled": acc.throttled,
            }
        )

    async def _faults(self, request: Request) -> Response:
        body = await request.json()
        self.account.faults.append(
            Fault(
                int(body["status"]),
                int(body.get("count", 1)),
                body.get("path_prefix", "/"),
                body.get("method"),
                float(body.get("delay", 0.0)),
                str(body.get("detail", "fault injected")),
            )
        )
        return JSONResponse({"ok": True})

    async def _rate_limit(self, request: Request) -> Response:
        body = await request.json()
        self.account.rate_limit = int(body.get("limit", 0))
        self.account.window_seconds = float(body.get("window", 60))
        return JSONResponse({"ok": True})

    async def _seed(self, request: Request) -> Response:
        try:
            self.seed(**(await request.json()))
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Problem as exc:
            return JSONResponse({"error": exc.detail}, status_code=400)
        return JSONResponse({"ok": True})

    def seed(
        self,
        *,
        courses: Iterable[dict[str, Any]] = (),
        communities: Iterable[dict[str, Any]] = (),
        subscriptions: Iterable[dict[str, Any]] = (),
        contacts: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Add courses ({id, name}), communities ({id, name}), contacts (a create's body: {email, fields}) and
        subscriptions ({id, contactId, status}); a subscription may name its contact by `contactEmail` instead, for
        trials by hand. Contacts seeded so spend no quota and send no webhook: an account's existing leads."""
        acc = self.account
        for contact in contacts:
            acc.create_contact(dict(contact))
        for course in courses:
            acc.courses[int(course["id"])] = {"active": True, "modules": [], **course}
        for community in communities:
            acc.communities[int(community["id"])] = {
                "domainName": "example.systeme.io",
                "path": "",
                **community,
            }
        for subscription in subscriptions:
            if "contactEmail" in subscription:
                subscription = dict(subscription)
                owner = acc.contact_by_email(str(subscription.pop("contactEmail")))
                if owner is None:
                    raise ValueError("no contact with that contactEmail: create it first (send an event for it)")
                subscription["contactId"] = owner["id"]
            acc.subscriptions[int(subscription["id"])] = {
                "status": "active",
                "createdAt": "2026-01-01T00:00:00+00:00",
                "cancelledAt": None,
                "completedAt": None,
                "pricePlan": None,
                **subscription,
            }
