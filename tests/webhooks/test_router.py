"""The ingest endpoint's answers over real HTTP, and that a refused request stores nothing."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.conftest import operator, planned, running
from tests.factories import (
    FORM_TOKEN,
    php_json,
    standard_headers,
    stripe_checkout,
    stripe_headers,
    systeme_headers,
    systeme_sale,
)
from tests.flows import count_rows
from tests.pgrefusal import ShuttingDownPostgres


@pytest.fixture
def service(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url, max_body_bytes=64 * 1024)) as url:
        yield url


async def post(url: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, follow_redirects=False) as http:
        return await http.post(path, **kwargs)


STRIPE_BODY = json.dumps(stripe_checkout()).encode()


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "message"),
    [
        (
            "/hooks/nope",
            lambda: {"content": b"{}", "headers": {"Content-Type": "application/json"}},
            404,
            "no source named 'nope'",
        ),
        (
            "/hooks/stripe",
            lambda: {"content": STRIPE_BODY, "headers": {"Content-Type": "application/json"}},
            401,
            "stripe-signature",
        ),
        (
            "/hooks/stripe",
            lambda: {"content": STRIPE_BODY, "headers": stripe_headers(STRIPE_BODY, secret="whsec_forged")},
            401,
            "does not match",
        ),
        ("/hooks/stripe", lambda: {"content": b"x" * 70_000, "headers": stripe_headers(b"x" * 70_000)}, 413, "limit"),
        (
            "/hooks/stripe",
            lambda: {"content": STRIPE_BODY, "headers": {**stripe_headers(STRIPE_BODY), "Content-Type": "text/plain"}},
            415,
            "JSON",
        ),
        (
            "/hooks/stripe",
            lambda: {"content": b"{not json", "headers": stripe_headers(b"{not json")},
            400,
            "not valid JSON",
        ),
        (
            "/hooks/stripe",
            lambda: {"content": b"[" * 60_000, "headers": stripe_headers(b"[" * 60_000)},
            400,
            "nested too deeply",
        ),
        ("/hooks/signup", lambda: {"data": {"email": "a@yopmail.com"}}, 401, "token"),
        (
            f"/hooks/signup?token={FORM_TOKEN}",
            lambda: {"content": b"email=\xff\xfe", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            400,
            "cannot be parsed",
        ),
    ],
)
async def test_refused_requests_get_a_clear_4xx_and_store_nothing(service, sqlite_url, path, kwargs, status, message):
    # Built now: a signature made at import would be stale (past the tolerance) in a long test run.
    answer = await post(service, path, **kwargs())
    assert answer.status_code == status, answer.text
    assert message.lower() in answer.json()["error"].lower()
    assert await count_rows(sqlite_url) == (0, 0)


async def test_streamed_body_over_the_limit_is_refused_without_content_length(service, sqlite_url):
    async def chunks():
        for _ in range(100):
            yield b"x" * 1024

    answer = await post(service, "/hooks/stripe", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert await count_rows(sqlite_url) == (0, 0)


async def test_form_with_redirect_answers_303(service, sqlite_url, sim):
    answer = await post(
        service, f"/hooks/signup?token={FORM_TOKEN}", data={"email": "f@yopmail.com", "first_name": "Fay"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://example.com/thanks"
    assert (await count_rows(sqlite_url))[0] == 1


async def test_form_without_redirect_answers_json_and_takes_header_token(service, sqlite_url):
    answer = await post(
        service,
        "/hooks/contact",
        files={"email": (None, "m@yopmail.com"), "cv": ("cv.txt", b"file", "text/plain")},
        headers={"X-Webhook-Token": FORM_TOKEN},
    )
    assert answer.status_code == 202
    # Two posts of the same form are two events: a form gives no id.
    again = await post(
        service, "/hooks/contact", data={"email": "m@yopmail.com"}, headers={"X-Webhook-Token": FORM_TOKEN}
    )
    assert again.status_code == 202 and again.json()["event_id"] != answer.json()["event_id"]


async def test_systeme_and_standard_webhooks_are_accepted_and_deduplicated(service, sqlite_url):
    body = php_json(systeme_sale())
    headers = systeme_headers(body, message_id="msg-42")
    first = await post(service, "/hooks/systeme", content=body, headers=headers)
    second = await post(service, "/hooks/systeme", content=body, headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {"event_id": first.json()["event_id"], "duplicate": True}

    partner = b'{"type": "user.created", "data": {"email": "p@yopmail.com", "last_name": "Ng"}}'
    answer = await post(service, "/hooks/partner", content=partner, headers=standard_headers(partner))
    assert answer.status_code == 202
    # Actions are planned after the answer: count them once both events are judged.
    await planned(service, first.json()["event_id"])
    await planned(service, answer.json()["event_id"])
    assert await count_rows(sqlite_url) == (2, 3)


async def test_systeme_events_with_identical_bodies_are_two_events(make_settings, database_url):
    # CONTACT_CREATED and CONTACT_OPT_IN of one sign-up carry the same bytes; only X-Webhook-Event tells them apart.
    body = php_json({"contact": {"id": 5501, "email": "zoe@gmail.com", "fields": [], "tags": []}})
    with running(make_settings(database_url=database_url)) as url:
        created = await post(
            url, "/hooks/systeme", content=body, headers=systeme_headers(body, event="CONTACT_CREATED")
        )
        opt_in = await post(url, "/hooks/systeme", content=body, headers=systeme_headers(body, event="CONTACT_OPT_IN"))
        # A replay with a new message id (systeme_headers makes one each call) stays a duplicate.
        replay = await post(url, "/hooks/systeme", content=body, headers=systeme_headers(body, event="CONTACT_OPT_IN"))
    assert (created.status_code, opt_in.status_code, replay.status_code) == (202, 202, 200), replay.text
    assert created.json()["event_id"] != opt_in.json()["event_id"] == replay.json()["event_id"]
    assert (await count_rows(database_url))[0] == 2


async def test_storage_unavailable_answers_503(make_settings, tmp_path):
    # Nothing listens on port 1: the store cannot take the write, so the sender must retry.
    settings = make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    with running(settings) as url:
        answer = await post(url, "/hooks/stripe", content=STRIPE_BODY, headers=stripe_headers(STRIPE_BODY))
        assert answer.status_code == 503
        assert "retry" in answer.json()["error"]
        async with httpx.AsyncClient(base_url=url) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False


async def test_a_postgresql_shutting_down_answers_503_not_500(make_settings):
    # During a restart PostgreSQL refuses new connections with 57P03; asyncpg raises it unwrapped at connect time.
    with ShuttingDownPostgres() as pg, running(make_settings(database_url=pg.url)) as url:
        answer = await post(url, "/hooks/stripe", content=STRIPE_BODY, headers=stripe_headers(STRIPE_BODY))
        async with operator(url) as http:
            listing = await http.get("/v1/events")
        assert pg.refused > 0
    assert answer.status_code == 503 and "retry" in answer.json()["error"], answer.text
    assert listing.status_code == 503 and "database" in listing.json()["error"], listing.text


async def test_concurrent_identical_deliveries_store_one_event(make_settings, database_url, sim):
    event = stripe_checkout("eve@yopmail.com")
    body = json.dumps(event).encode()
    with running(make_settings(database_url=database_url)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answers = await asyncio.gather(
                *[http.post("/hooks/stripe", content=body, headers=stripe_headers(body)) for _ in range(10)]
            )
        assert sorted(a.status_code for a in answers) == [200] * 9 + [202]
        assert len({a.json()["event_id"] for a in answers}) == 1
        # Actions are planned after the answer: count them once the one event is judged.
        await planned(url, answers[0].json()["event_id"])
        assert (await count_rows(database_url)) == (1, 3)
