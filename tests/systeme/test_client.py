"""The client against the simulator over HTTP: auth headers, pagination, problem documents, pacing."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.systeme.client import SystemeClient
from app.systeme.errors import AccountUnusable, PermanentApiError, TransientApiError
from tests.conftest import SIM_KEY


@pytest.fixture
async def client(sim):
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": SIM_KEY})
    yield client
    await client.aclose()


async def test_pagination_follows_has_more(client, sim):
    for n in range(235):
        sim.account.create_tag({"name": f"tag-{n:03d}"})
    names = [t["name"] async for t in client.session().paginate("/api/tags")]
    assert len(names) == 235 and len(set(names)) == 235
    pages = [c for c in sim.account.calls if c["path"] == "/api/tags"]
    assert len(pages) == 3
    assert "startingAfter" in pages[1]["query"] and "limit=100" in pages[0]["query"]


async def test_wrong_key_says_the_account_is_unusable_in_its_own_words(sim):
    client = SystemeClient(base_url=sim.url, headers={"X-API-Key": "wrong"})
    try:
        with pytest.raises(AccountUnusable) as caught:
            await client.session().get_json("/api/tags")
        assert caught.value.status == 401 and "Invalid API key" in caught.value.message
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("status", "body", "maton", "refused"),
    [
        (401, {"error": "Unauthorized"}, False, True),
        (403, {"error": "Forbidden"}, False, False),  # one record or feature: the runner probes before holding
        (400, {"error": "No connection found for app systeme"}, True, True),
        (400, {"error": "No connection found for app systeme"}, False, False),  # direct: a plain bad request
        (500, {"error": "The upstream authorization expired: reconnect the account"}, True, True),
        (500, {"error": "Internal Server Error"}, True, False),
        (422, {"detail": "email: This value is already used."}, False, False),
    ],
)
def test_which_answers_say_the_account_is_unusable(status, body, maton, refused):
    import httpx

    from app.systeme.client import account_refused, problem

    answer = httpx.Response(status, json=body)
    assert account_refused(answer, maton=maton) is refused
    assert problem(answer) == next(iter(body.values()))  # `error` is read too, not only `detail`


async def test_422_carries_the_problem_detail(client, sim):
    api = client.session()
    await api.request("POST", "/api/contacts", body={"email": "dup@yopmail.com"})
    with pytest.raises(PermanentApiError, match="email: This value is already used"):
        await api.request("POST", "/api/contacts", body={"email": "dup@yopmail.com"})
    assert [c["status_code"] for c in api.calls] == [201, 422]


async def test_merge_patch_needs_its_content_type(client, sim):
    api = client.session()
    contact = (await api.request("POST", "/api/contacts", body={"email": "m@yopmail.com"})).json()
    with pytest.raises(PermanentApiError) as caught:
        await api.request("PATCH", f"/api/contacts/{contact['id']}", body={"fields": []})
    assert caught.value.status == 415
    patched = await api.request(
        "PATCH",
        f"/api/contacts/{contact['id']}",
        body={"fields": [{"slug": "first_name", "value": "Max"}]},
        content_type="application/merge-patch+json",
    )
    assert patched.json()["fields"][0]["value"] == "Max"


async def test_429_and_5xx_are_transient_with_retry_after(client, sim):
    sim.account.rate_limit, sim.account.window_seconds = 2, 120
    api = client.session()
    await api.get_json("/api/tags")
    await api.get_json("/api/tags")
    # The last answer said 0 remaining for ~120 s: longer than the client waits in a job, so it reschedules.
    with pytest.raises(TransientApiError) as caught:
        await api.get_json("/api/tags")
    assert caught.value.retry_after is not None and caught.value.retry_after > 100
    assert sim.account.throttled == 0  # paced: the 429 was never provoked


async def test_network_error_is_transient():
    client = SystemeClient(base_url="http://127.0.0.1:1", headers={})
    try:
        with pytest.raises(TransientApiError, match="network error"):
            await client.session().get_json("/api/tags")
    finally:
        await client.aclose()


def test_auth_modes_follow_the_settings():
    maton = Settings(_env_file=None, maton_api_key="mk-123456", maton_connection="conn-1", systeme_api_key=None)
    assert maton.api_base_url == "https://api.maton.ai/systeme"
    assert maton.api_headers == {"Authorization": "Bearer mk-123456", "Maton-Connection": "conn-1"}
    direct = Settings(_env_file=None, systeme_api_key="sk-123456", maton_api_key=None)
    assert (direct.api_base_url, direct.api_headers) == ("https://api.systeme.io", {"X-API-Key": "sk-123456"})
    dry = Settings(_env_file=None, systeme_api_key=None, maton_api_key=None)
    assert dry.api_mode == "dry-run"


def test_both_keys_is_a_startup_error_that_says_to_keep_one():
    with pytest.raises(ValueError, match="keep one") as caught:
        Settings(_env_file=None, maton_api_key="mk-123456", systeme_api_key="sk-123456")
    assert "mk-123456" not in str(caught.value) and "sk-123456" not in str(caught.value)


async def test_the_pager_stops_on_a_page_it_already_had(client, sim):
    for n in range(150):
        sim.account.create_tag({"name": f"tag-{n:03d}"})
    sim.account.pager = "ignore_cursor"
    with pytest.raises(TransientApiError) as caught:
        [t async for t in client.session().paginate("/api/tags")]
    assert "pagination stuck" in caught.value.message
    assert len([c for c in sim.account.calls if c["path"] == "/api/tags"]) == 2


async def test_a_limit_the_list_refuses_is_asked_again_at_the_minimum(client, sim):
    owner = sim.account.create_contact({"email": "sub@yoga-online.org"})
    sim.simulator.seed(subscriptions=[{"id": n, "contactId": owner["id"]} for n in range(1, 13)])
    ids = [s["id"] async for s in client.session().paginate("/api/payment/subscriptions", {"contact": owner["id"]})]
    assert ids == list(range(1, 13))
    limits = [c["query"].split("limit=")[1].split("&")[0] for c in sim.account.calls]
    assert limits == ["100", "10", "10"]  # refused once, then pages of 10
