"""/_sim/ controls of the simulator's strict behaviours, which are all on by default (see docs/systeme-api.md).

- `POST /_sim/forbid` `{"course": 101}`, `{"community": 7}`, `{"tag": 5}`, `{"contact": 9}`, `{"subscription": 3}`
  or `{"path": "/api/tags"}`: the key may not touch that record or feature (403, the API's "Access Denied.");
  `{"clear": true}` forgets them all.
- `POST /_sim/memberships` `{"delay": 0.2}`: seconds before an accepted (202) membership is listed (default 2).
- `POST /_sim/payments` `{"enabled": false}`: the subscriptions endpoints answer 404, as where payments are not
  set up; `{"limit": 50}`: the largest `limit` the subscriptions list accepts (default 50, a 422 above it).
- `POST /_sim/pager` `{"mode": "ignore_cursor"}`: every list answers its first page whatever `startingAfter`
  says, as a misbehaving server would; `{"mode": "honest"}` restores it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.simulator.state import Account

# Where each kind of record lives, for /_sim/forbid.
RECORDS = {
    "course": "/api/school/courses/{}",
    "community": "/api/community/communities/{}",
    "tag": "/api/tags/{}",
    "contact": "/api/contacts/{}",
    "subscription": "/api/payment/subscriptions/{}",
}
FORBIDDEN_BODY = {
    "type": "https://tools.ietf.org/html/rfc2616#section-10",
    "title": "An error occurred",
    "status": 403,
    "detail": "Access Denied.",
}


async def _body(request: Request) -> dict[str, object]:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def controls(account: Callable[[], Account]) -> list[Route]:
    async def forbid(request: Request) -> Response:
        body, acc = await _body(request), account()
        if body.get("clear"):
            acc.forbidden.clear()
        for kind, path in RECORDS.items():
            if kind in body:
                acc.forbidden.add(path.format(int(str(body[kind]))))
        if isinstance(body.get("path"), str):
            acc.forbidden.add(str(body["path"]))
        return JSONResponse({"forbidden": sorted(acc.forbidden)})

    async def memberships(request: Request) -> Response:
        body, acc = await _body(request), account()
        acc.membership_delay = float(str(body.get("delay", acc.membership_delay)))
        return JSONResponse({"delay": acc.membership_delay})

    async def payments(request: Request) -> Response:
        body, acc = await _body(request), account()
        acc.payments = bool(body.get("enabled", acc.payments))
        acc.subscriptions_limit = int(str(body.get("limit", acc.subscriptions_limit)))
        return JSONResponse({"enabled": acc.payments, "limit": acc.subscriptions_limit})

    async def pager(request: Request) -> Response:
        body, acc = await _body(request), account()
        mode = str(body.get("mode", "honest"))
        if mode not in ("honest", "ignore_cursor"):
            return JSONResponse({"error": "mode is honest or ignore_cursor"}, status_code=400)
        acc.pager = mode
        return JSONResponse({"mode": mode})

    return [
        Route("/_sim/forbid", forbid, methods=["POST"]),
        Route("/_sim/memberships", memberships, methods=["POST"]),
        Route("/_sim/payments", payments, methods=["POST"]),
        Route("/_sim/pager", pager, methods=["POST"]),
    ]
