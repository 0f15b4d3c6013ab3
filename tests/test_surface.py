"""What the HTTP surface shows to strangers, and how it answers when the database is away."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import operator, running


async def get(url: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await http.get(path, **kwargs)


async def test_api_docs_are_off_by_default_and_on_when_asked(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        assert [(await get(url, p)).status_code for p in ("/docs", "/redoc", "/openapi.json")] == [404, 404, 404]
    with running(make_settings(database_url=sqlite_url, api_docs=True)) as url:
        assert [(await get(url, p)).status_code for p in ("/docs", "/redoc", "/openapi.json")] == [200, 200, 200]


async def test_metrics_can_require_a_token(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        assert (await get(url, "/metrics")).status_code == 200
    with running(make_settings(database_url=sqlite_url, metrics_token="scrape-token-for-tests")) as url:
        assert (await get(url, "/metrics")).status_code == 401
        wrong = await get(url, "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "METRICS_TOKEN" in wrong.json()["error"]
        good = await get(url, "/metrics", headers={"Authorization": "Bearer scrape-token-for-tests"})
        assert good.status_code == 200 and "systeme_flow_queue_depth" in good.text


@pytest.mark.parametrize("since", ["99999999d", "999999999999w", "0001-01-01T00:00:00+01:00", "banana"])
async def test_an_impossible_since_is_a_400(make_settings, sqlite_url, since):
    with running(make_settings(database_url=sqlite_url)) as url:
        async with operator(url) as http:
            answer = await http.get("/v1/events", params={"since": since})
    assert answer.status_code == 400, answer.text
    assert "since" in answer.json()["error"] or "duration" in answer.json()["error"]


async def test_the_dashboard_and_the_operator_api_answer_503_when_the_database_is_down(make_settings):
    # Nothing listens on port 1: every query fails to connect.
    with running(make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")) as url:
        async with operator(url) as http:
            answers = [
                await http.get("/v1/events"),
                await http.get("/v1/actions"),
                await http.get("/v1/events/evt_x"),
                await http.get("/ui"),
                await http.get("/ui/actions"),
                await http.get("/metrics"),
            ]
    assert [a.status_code for a in answers] == [503] * 6, [a.text for a in answers]
    assert all("database" in a.json()["error"] for a in answers)
