"""The dashboard at /ui: server-rendered pages over the same services as the operator API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from app.deps import StateDep, operator_for, require_operator
from app.errors import AppError, Forbidden, NotFound, Unauthorized
from app.operator import service
from app.operator.modes import discard_hint, leftover_lines
from app.payments.alerts import counts_under
from app.payments.service import list_payments
from app.preview.service import explain, render_text
from app.rules.schema import DEFAULT_ACCOUNT
from app.store.holds import holds
from app.store.models import utcnow
from app.store.modes import leftovers
from app.store.queries import ACTION_STATUSES, get_event, list_actions, list_events, rule_stats
from app.store.sessions import close_session, open_session, session_operator
from app.store.statuses import PaymentStatus
from app.ui import charts, rules_view, sales, session
from app.webhooks.body import build_delivery
from app.webhooks.ratelimit import forwarded_https

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, default=str, ensure_ascii=False)


def code_spans(text: str) -> Markup:
    """Text shared with the CLI marks a command between backticks: on a page it is shown as code."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


TEMPLATES.env.filters["code_spans"] = code_spans
router = APIRouter(prefix="/ui", include_in_schema=False)
# `/` itself: a person who opens the service's address in a browser lands on the dashboard.
home = APIRouter(include_in_schema=False)


@home.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


class SignIn(Exception):
    """Raised for a page view without a session: answered with a redirect to the sign-in page."""


async def _operator(request: Request, state: StateDep) -> str:
    if request.headers.get("authorization"):
        return await require_operator(request, state)  # scripts: Bearer token, no cookie, no CSRF needed
    if state.settings.admin_token is None:
        raise Forbidden("the dashboard is disabled: set ADMIN_TOKEN to enable it")
    signed = session.parse(state.settings, request.cookies.get(session.COOKIE))
    operator = await session_operator(state.engine, signed.key, now=utcnow()) if signed else None
    if operator is None:
        raise SignIn()
    return operator


Operator = Annotated[str, Depends(_operator)]


async def _checked(request: Request, state: StateDep, operator: Operator) -> str:
    """A state-changing form post: the CSRF token must match the session (Bearer callers have no cookie)."""
    if request.headers.get("authorization"):
        return operator
    form = await request.form()
    token = form.get("csrf")
    if not session.csrf_ok(
        state.settings, request.cookies.get(session.COOKIE), token if isinstance(token, str) else None
    ):
        raise Unauthorized("the form expired or came from another site: reload the page and try again")
    return operator


Checked = Annotated[str, Depends(_checked)]


def wants_page(request: Request) -> bool:
    """A browser on a dashboard path (scripts send a Bearer token, or ask for JSON): errors are answered as pages."""
    path = request.url.path
    return (
        (path == "/ui" or path.startswith("/ui/"))
        and not request.headers.get("authorization")
        and "text/html" in request.headers.get("accept", "")
    )


TITLES = {400: "That did not work", 401: "Please try again", 403: "Not allowed", 404: "Not found", 409: "Not now"}


def error_page(request: Request, message: str, status: int) -> HTMLResponse:
    referer = urlsplit(request.headers.get("referer", ""))
    # Back to the page the form was on, when it is one of ours (same rule as the forms' `back`).
    back = inside(referer.path + (f"?{referer.query}" if referer.query else "")) if referer.path else "/ui"
    title = TITLES.get(status, "Something went wrong")
    # No session context here: the page names no operator and holds, which a failed check must not imply.
    values: dict[str, Any] = {"operator": None, "csrf": "", "holds": [], "dry_run": False}
    values |= {"status": status, "title": title, "message": message, "back": back}
    return TEMPLATES.TemplateResponse(request, "error.html", values, status_code=status)


async def page(request: Request, name: str, operator: str | None, **context: Any) -> HTMLResponse:
    cookie = request.cookies.get(session.COOKIE)
    state = request.app.state.sf
    csrf = session.csrf_token(state.settings, cookie) if cookie else ""
    # Every signed-in page says when an account is held: nothing fails, but nothing reaches Systeme.io either.
    held = await holds(state.engine) if operator is not None else []
    # And a dry run, on every page: its actions all end "skipped", which alone looks like a fault.
    dry_run = operator is not None and state.settings.api_mode == "dry-run"
    values = {"operator": operator, "csrf": csrf, "holds": held, "dry_run": dry_run, **context}
    return TEMPLATES.TemplateResponse(request, name, values)


@router.get("/login")
async def login_form(request: Request, state: StateDep, error: str | None = None) -> HTMLResponse:
    # Without ADMIN_TOKEN no token can sign in: say so, rather than call every one typed "not valid".
    return await page(request, "login.html", None, error=error, enabled=bool(state.settings.operators()))


@router.post("/login")
async def login(request: Request, state: StateDep, token: Annotated[str, Form()]) -> Response:
    name = operator_for(state.settings, token.strip())
    if name is None:
        return RedirectResponse("/ui/login?error=1", status_code=303)
    cookie, opened = session.issue(state.settings, name)
    expires = datetime.fromtimestamp(opened.expires, UTC)
    await open_session(state.engine, key=opened.key, operator=name, now=utcnow(), expires=expires)
    peer = request.client.host if request.client else None
    https = request.url.scheme == "https" or forwarded_https(peer, request.headers, state.trusted_proxies)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        session.COOKIE,
        cookie,
        max_age=session.LIFETIME_SECONDS,
        httponly=True,
        samesite="strict",
        secure=https,
        path="/ui",
    )
    return response


@router.post("/logout")
async def logout(request: Request, state: StateDep, operator: Checked) -> Response:
    signed = session.parse(state.settings, request.cookies.get(session.COOKIE))
    if signed is not None:
        await close_session(state.engine, signed.key)  # a copy of the cookie opens nothing from now on
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(session.COOKIE, path="/ui")
    return response


def inside(back: str) -> str:
    """`back` if it is a dashboard path, else the actions page: a form field must not lead off the site."""
    parts = urlsplit(back)
    safe = (
        not parts.scheme
        and not parts.netloc
        and (parts.path == "/ui" or parts.path.startswith("/ui/"))
        and "\\" not in back
        and ".." not in parts.path.split("/")
    )
    return back if safe else "/ui/actions"


@router.get("")
async def events_page(
    request: Request,
    state: StateDep,
    operator: Operator,
    source: str | None = None,
    status: str | None = None,
    email: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    items, next_cursor = await list_events(
        state.engine, source=source or None, status=status or None, email=email or None, cursor=cursor, limit=50
    )
    now = utcnow()
    chart = charts.svg(await charts.hourly(state.engine, now=now))
    # The home page is headed by every buyer who paid and has no access, until served or marked handled.
    deadline = timedelta(minutes=state.settings.access_deadline_minutes)
    since = now - timedelta(days=sales.DAYS)
    unserved = await list_payments(
        state.engine, state.rules.sources, now=now, deadline=deadline, since=since, status=PaymentStatus.UNSERVED
    )
    # As the alert counts them: a dry run's test purchase is no buyer once the account is the simulator or live.
    mode = state.pipeline.modes().get(DEFAULT_ACCOUNT)
    unserved = [item for item in unserved if counts_under(item, mode)]
    filters = {"source": source or "", "status": status or "", "email": email or ""}
    # What a dry run or the simulator left, which the account now configured will never run (app/accounts/modes.py).
    left = await leftovers(state.engine, state.clients.modes)
    return await page(
        request,
        "events.html",
        operator,
        leftovers=leftover_lines(left),
        discard_hint=discard_hint(left),
        items=items,
        next_cursor=next_cursor,
        chart=chart,
        unserved=unserved,
        now=now,
        duration=sales.duration,
        days=sales.DAYS,
        head_limit=sales.HEAD_LIMIT,
        filters=filters,
        sources=sorted(state.rules.sources),
        statuses=ACTION_STATUSES,
    )


@router.get("/events")
async def events_list(request: Request) -> RedirectResponse:
    # The events are listed on the home page; /ui/events is where a user guesses them (and /ui/events/{id} hints).
    query = request.url.query
    return RedirectResponse("/ui" + (f"?{query}" if query else ""), status_code=307)


@router.get("/events/{event_id}")
async def event_page(event_id: str, request: Request, state: StateDep, operator: Operator) -> HTMLResponse:
    event = await get_event(state.engine, event_id)
    if event is None:
        raise NotFound(f"no event {event_id!r}")
    return await page(request, "event.html", operator, event=event)


@router.get("/actions")
async def actions_page(
    request: Request, state: StateDep, operator: Operator, status: str = "attention"
) -> HTMLResponse:
    statuses = ["awaiting_approval", "failed", "dead"] if status == "attention" else [status]
    items = []
    for one in statuses:
        found, _ = await list_actions(state.engine, status=one, limit=200)
        items += found
    known = status == "attention" or status in ACTION_STATUSES
    return await page(request, "actions.html", operator, items=items, status=status, known=known)


@router.post("/actions/{action_id}/{verb}")
async def act(action_id: str, verb: str, request: Request, state: StateDep, operator: Checked) -> Response:
    form = await request.form()
    await _do(state, verb, action_id, operator, str(form.get("reason") or "") or None)
    return RedirectResponse(inside(str(form.get("back") or "")), status_code=303)


@router.post("/bulk")
async def bulk(request: Request, state: StateDep, operator: Checked) -> Response:
    form = await request.form()
    verb = str(form.get("verb"))
    for action_id in form.getlist("ids"):
        try:
            await _do(state, verb, str(action_id), operator, None)
        except AppError:
            continue  # one that changed state meanwhile does not stop the rest
    status = str(form.get("status") or "attention")
    return RedirectResponse("/ui/actions" + (f"?status={status}" if status in ACTION_STATUSES else ""), status_code=303)


async def _do(state: Any, verb: str, action_id: str, operator: str, reason: str | None) -> None:
    if verb == "approve":
        modes = state.clients.modes
        await service.approve(state.engine, state.dispatcher, action_id, by=operator, modes=modes)
    elif verb == "reject":
        await service.reject(state.engine, action_id, by=operator, reason=reason)
    elif verb == "retry":
        await service.retry(state.engine, state.dispatcher, action_id, by=operator, modes=state.clients.modes)
    elif verb == "run-now":
        modes = state.clients.modes
        await service.run_now(state.engine, state.dispatcher, action_id, by=operator, modes=modes)
    elif verb == "cancel":
        await service.cancel(state.engine, action_id, by=operator, reason=reason)
    else:
        raise NotFound(f"no such action button {verb!r}")


async def _rules(
    request: Request,
    state: Any,
    operator: str,
    *,
    report: str | None = None,
    source: str = "",
    payload: str = "{}",
    headers: str = "",
) -> HTMLResponse:
    stats = await rule_stats(state.engine, since=utcnow() - timedelta(hours=24))
    return await page(
        request,
        "rules.html",
        operator,
        rules=state.rules,
        rows=rules_view.rule_rows(state.rules),
        samples=rules_view.sample_menu(state.rules),
        stats=stats,
        error=state.rules_error,
        report=report,
        test={"source": source, "payload": payload, "headers": headers},
    )


@router.get("/rules")
async def rules_page(
    request: Request, state: StateDep, operator: Operator, source: str = "", sample: str = ""
) -> HTMLResponse:
    """With `source` and `sample`, the test box holds that sample event, ready to explain."""
    if source and sample:
        payload, headers = rules_view.prefill(state.rules, source, sample)
        return await _rules(request, state, operator, source=source, payload=payload, headers=headers)
    return await _rules(request, state, operator, source=source)


@router.post("/rules/test")
async def rules_test(request: Request, state: StateDep, operator: Checked) -> HTMLResponse:
    """The "test an event" box: explain, with no side effects."""
    form = await request.form()
    source, payload = str(form.get("source") or ""), str(form.get("payload") or "{}")
    header_text = str(form.get("headers") or "")
    config = state.rules.sources.get(source)
    try:
        body, content_type = rules_view.test_body(config.type if config else "", payload)
        headers = {"content-type": content_type, **rules_view.header_lines(header_text)}
        delivery = await build_delivery(config.type if config else "", headers, body, {})
        report = render_text(await explain(state.rules, source=source, delivery=delivery, engine=state.engine))
    except (ValueError, AppError) as exc:
        report = f"cannot explain this event: {getattr(exc, 'message', exc)}"
    return await _rules(request, state, operator, report=report, source=source, payload=payload, headers=header_text)
