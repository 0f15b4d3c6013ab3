"""Dashboard sessions over plain HTTP: sign-out ends them on the server, cookies and redirects stay on this site."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from app.store.db import create_engine
from app.store.models import utcnow
from app.store.sessions import open_session, purge_sessions, session_operator
from tests.conftest import ADMIN, post_stripe, running
from tests.factories import stripe_checkout


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, follow_redirects=False)


async def sign_in(http: httpx.AsyncClient, **headers: str) -> httpx.Response:
    answer = await http.post("/ui/login", data={"token": ADMIN}, headers=headers)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    return answer


async def csrf(http: httpx.AsyncClient) -> str:
    page = await http.get("/ui")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match
    return match.group(1)


async def test_sign_out_ends_the_session_on_the_server(make_settings, database_url):
    with running(make_settings(database_url=database_url)) as url:
        async with client(url) as http:
            await sign_in(http)
            cookie = http.cookies["sf_session"]
            out = await http.post("/ui/logout", data={"csrf": await csrf(http)})
            assert out.status_code == 303
        # The old cookie, replayed (stolen, or kept by a browser that ignored the deletion), opens nothing.
        async with httpx.AsyncClient(base_url=url, cookies={"sf_session": cookie}) as replay:
            page = await replay.get("/ui", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/ui/login"


async def test_another_session_survives_a_sign_out(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        async with client(url) as first, client(url) as second:
            await sign_in(first)
            await sign_in(second)
            await first.post("/ui/logout", data={"csrf": await csrf(first)})
            assert (await second.get("/ui")).status_code == 200


@pytest.mark.parametrize(
    ("trusted", "proto", "secure"),
    [("127.0.0.1", "https", True), ("127.0.0.0/8", "https", True), ("", "https", False), ("127.0.0.1", "http", False)],
)
async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(make_settings, sqlite_url, trusted, proto, secure):
    with running(make_settings(database_url=sqlite_url, forwarded_allow_ips=trusted)) as url:
        async with client(url) as http:
            answer = await sign_in(http, **{"X-Forwarded-Proto": proto})
    cookie = answer.headers["set-cookie"].lower()
    assert ("; secure" in cookie) is secure, cookie
    assert "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize(
    ("back", "location"),
    [
        ("/ui/events/evt_1#act_1", "/ui/events/evt_1#act_1"),
        ("/ui", "/ui"),
        ("https://evil.example/ui", "/ui/actions"),
        ("//evil.example/ui", "/ui/actions"),
        ("/\\evil.example", "/ui/actions"),
        ("/uixyz", "/ui/actions"),
        ("/v1/events", "/ui/actions"),
        ("/ui/../v1/events", "/ui/actions"),
        ("javascript:alert(1)", "/ui/actions"),
        ("", "/ui/actions"),
    ],
)
async def test_back_only_leads_inside_the_dashboard(make_settings, sqlite_url, back, location):
    # A dry run records actions as skipped, which an operator may retry.
    with running(make_settings(database_url=sqlite_url, systeme_api_key=None)) as url:
        await post_stripe(url, stripe_checkout("back@yopmail.com"))
        async with client(url) as http:
            await sign_in(http)
            action_id = re.findall(r"act_[0-9a-f]+", (await http.get("/ui/actions?status=skipped")).text)[0]
            answer = await http.post(f"/ui/actions/{action_id}/retry", data={"csrf": await csrf(http), "back": back})
    assert answer.status_code == 303
    assert answer.headers["location"] == location
    assert not urlsplit(answer.headers["location"]).netloc


async def test_expired_sessions_are_purged_and_never_honoured(sqlite_url):
    engine = create_engine(sqlite_url)
    now = utcnow()
    try:
        await open_session(
            engine, key="old", operator="dana", now=now - timedelta(hours=13), expires=now - timedelta(hours=1)
        )
        await open_session(engine, key="new", operator="dana", now=now, expires=now + timedelta(hours=12))
        assert await session_operator(engine, "old", now=now) is None
        assert await purge_sessions(engine, now=now) == 1
        assert await session_operator(engine, "new", now=now) == "dana"
    finally:
        await engine.dispose()


async def test_the_sign_in_page_says_when_no_admin_token_is_set(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url, admin_token=None)) as url:
        async with client(url) as http:
            page = await http.get("/ui/login")
    assert "Sign-in is disabled: ADMIN_TOKEN is not set" in page.text
    assert 'name="token"' not in page.text and "not valid" not in page.text


async def test_the_sign_in_page_says_where_the_token_is(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        async with client(url) as http:
            page = await http.get("/ui/login")
    assert "the value of ADMIN_TOKEN" in page.text and 'name="token"' in page.text


async def test_a_stale_form_in_a_browser_is_a_page_in_words_and_changes_nothing(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        async with client(url) as http:
            await sign_in(http)
            browser = {"Accept": "text/html,application/xhtml+xml", "Referer": f"{url}/ui/actions?status=failed"}
            # The form of a page opened before a sign-out and sign-in: its token is another session's.
            stale = await http.post("/ui/logout", data={"csrf": "0" * 32}, headers=browser)
            script = await http.post("/ui/logout", data={"csrf": "0" * 32})
            still_in = await http.get("/ui")
    assert stale.status_code == 401 and stale.headers["content-type"].startswith("text/html")
    assert "the form expired or came from another site: reload the page and try again" in stale.text
    assert 'href="/ui/actions?status=failed"' in stale.text  # back where the form was
    # Anything that does not ask for a page keeps the JSON body.
    assert script.status_code == 401 and script.json()["error"].startswith("the form expired")
    assert still_in.status_code == 200  # the stale sign-out did not sign anyone out
