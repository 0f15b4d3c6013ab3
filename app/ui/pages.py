"""Dashboard pages about buyers and people: sales at a glance, a contact's whole story, and the buttons that
serve an unserved payment (replay its event, mark it handled)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import StateDep
from app.operator import service
from app.operator.story import contact_story
from app.payments.handled import mark_handled
from app.payments.service import judge_payments, list_payments, list_refunds
from app.store.models import utcnow
from app.ui import sales
from app.ui.router import Checked, Operator, inside, page

router = APIRouter(prefix="/ui", include_in_schema=False)


def _deadline(state: Any) -> timedelta:
    return timedelta(minutes=state.settings.access_deadline_minutes)


@router.get("/sales")
async def sales_page(request: Request, state: StateDep, operator: Operator) -> HTMLResponse:
    now = utcnow()
    since = now - timedelta(days=sales.DAYS)
    sources = state.rules.sources
    payments = await list_payments(state.engine, sources, now=now, deadline=_deadline(state), since=since)
    refunds = await list_refunds(state.engine, sources, since=since)
    summary = sales.summarise(payments, refunds, now=now)
    charts = {
        "days": sales.days_svg(summary.days),
        "revenue": sales.revenue_svg(summary.revenue),
        "waits": sales.waits_svg(summary.waits),
    }
    return await page(
        request, "sales.html", operator, summary=summary, charts=charts, duration=sales.duration, days=sales.DAYS
    )


@router.get("/contacts/{email:path}")
async def contact_page(email: str, request: Request, state: StateDep, operator: Operator) -> HTMLResponse:
    story = await contact_story(state.engine, state.rules.sources, email)
    # Each purchase with its status (served, unserved, refunded, handled), judged as the payments listing does.
    paid = [e for e in story["events"] if e["payment"] and e["payment"]["kind"] == "payment"]
    statuses = {}
    if paid:
        ids = [e["id"] for e in paid]
        deadline = _deadline(state)
        statuses = await judge_payments(state.engine, state.rules.sources, ids, now=utcnow(), deadline=deadline)
    return await page(request, "contact.html", operator, story=story, statuses=statuses)


@router.post("/payments/{event_id}/handled")
async def handled(event_id: str, request: Request, state: StateDep, operator: Checked) -> Response:
    form = await request.form()
    reason = str(form.get("reason") or "")
    await mark_handled(
        state.engine, state.rules.sources, event_id, by=operator, reason=reason, now=utcnow(), deadline=_deadline(state)
    )
    return RedirectResponse(inside(str(form.get("back") or "/ui")), status_code=303)


@router.post("/events/{event_id}/replay")
async def replay(event_id: str, request: Request, state: StateDep, operator: Checked) -> Response:
    form = await request.form()
    window = timedelta(hours=state.settings.approval_timeout_hours)
    modes = state.clients.modes
    await service.replay(
        state.engine, state.dispatcher, state.rules, event_id, by=operator, approval_window=window, modes=modes
    )
    return RedirectResponse(inside(str(form.get("back") or f"/ui/events/{event_id}")), status_code=303)
