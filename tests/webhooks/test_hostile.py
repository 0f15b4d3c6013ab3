"""Hostile input over real HTTP (issue 11): each answer is a quick, clear 4xx, and nothing is stored."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import operator, running
from tests.factories import FORM_TOKEN
from tests.webhooks.test_router import count_rows

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def service(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url, systeme_api_key=None)) as url:
        yield url


async def post(url: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await http.post(path, **kwargs)


class TestFormFields:
    async def test_too_many_urlencoded_fields_are_refused(self, service, sqlite_url):
        body = "&".join(["a=1"] * 100_000).encode()
        answer = await post(service, f"/hooks/contact?token={FORM_TOKEN}", content=body, headers=FORM)
        assert answer.status_code == 400, answer.text
        assert "too many fields" in answer.json()["error"]
        assert await count_rows(sqlite_url) == (0, 0)

    async def test_too_many_multipart_fields_are_refused(self, service, sqlite_url):
        files = [("a", (None, "1")) for _ in range(1_001)]
        answer = await post(service, "/hooks/contact", files=files, headers={"X-Webhook-Token": FORM_TOKEN})
        assert answer.status_code == 400, answer.text
        assert "too many fields" in answer.json()["error"].lower()
        assert await count_rows(sqlite_url) == (0, 0)

    async def test_repeated_fields_up_to_the_cap_become_one_list(self, service):
        body = "&".join(f"a={i}" for i in range(999)).encode() + b"&email=r@example.com"
        answer = await post(service, f"/hooks/contact?token={FORM_TOKEN}", content=body, headers=FORM)
        assert answer.status_code == 202, answer.text
        async with operator(service) as http:
            event = (await http.get(f"/v1/events/{answer.json()['event_id']}")).json()
        assert event["payload"]["a"] == [str(i) for i in range(999)]
        assert event["payload"]["email"] == "r@example.com"

    @pytest.mark.parametrize("query", [{}, {"token": "wrong"}])
    async def test_the_token_is_checked_before_the_body_is_parsed(self, service, sqlite_url, query):
        # A body that cannot be parsed: without the right token, the answer says so before parsing (401, not 400).
        body = "&".join(["a=1"] * 100_000).encode() + b"&email=\xff"
        answer = await post(service, "/hooks/contact", content=body, headers=FORM, params=query)
        assert answer.status_code == 401, answer.text
        assert await count_rows(sqlite_url) == (0, 0)
