"""Rate limits of unsigned sources: per client, shared through Redis, X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import httpx

from app.webhooks.ratelimit import client_address, forwarded_https, trusted_networks
from tests.conftest import running
from tests.factories import FORM_TOKEN, RULES, write_rules

LIMITED = RULES.replace(
    'contact: { type: form, token: "form-token-abc123" }',
    'contact: { type: form, token: "form-token-abc123", rate_limit: 3/hour }',
)


async def post(url: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Webhook-Token": FORM_TOKEN, **({"X-Forwarded-For": forwarded} if forwarded else {})}
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post("/hooks/contact", data={"email": "rl@yopmail.com"}, headers=headers)


async def test_limit_per_client_behind_a_trusted_proxy(make_settings, sqlite_url, tmp_path):
    settings = make_settings(database_url=sqlite_url, systeme_api_key=None, forwarded_allow_ips="127.0.0.1")
    write_rules(tmp_path, LIMITED)
    with running(settings) as url:
        assert [(await post(url, "198.51.100.7")).status_code for _ in range(3)] == [202, 202, 202]
        refused = await post(url, "198.51.100.7")
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 3601
        assert "too many posts" in refused.json()["error"]
        assert (await post(url, "203.0.113.9")).status_code == 202  # another visitor, own quota
        async with httpx.AsyncClient(base_url=url) as http:
            signed_source = await http.post(
                "/hooks/stripe", content=b"{}", headers={"Content-Type": "application/json"}
            )
        assert signed_source.status_code == 401  # signed sources have no rate limit, only their signature


async def test_forwarded_for_is_ignored_from_untrusted_peers(make_settings, sqlite_url, tmp_path):
    settings = make_settings(database_url=sqlite_url, systeme_api_key=None, forwarded_allow_ips="")
    write_rules(tmp_path, LIMITED)
    with running(settings) as url:
        statuses = [(await post(url, f"203.0.113.{n}")).status_code for n in range(4)]
    assert statuses == [202, 202, 202, 429]


async def test_replicas_share_the_limit_through_redis(make_settings, sqlite_url, tmp_path, clean_redis):
    settings = make_settings(database_url=sqlite_url, systeme_api_key=None, redis_url=clean_redis)
    write_rules(tmp_path, LIMITED)
    with running(settings) as first, running(settings) as second:
        statuses = [(await post(url)).status_code for url in (first, second, first, second)]
    assert statuses == [202, 202, 202, 429]


def test_client_address_walks_forwarded_for_from_the_right():
    trusted = trusted_networks("10.0.0.0/8, 127.0.0.1")
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.1.2.3"}
    assert client_address("127.0.0.1", headers, trusted) == "198.51.100.7"
    assert client_address("192.0.2.1", headers, trusted) == "192.0.2.1"
    assert client_address("127.0.0.1", {}, trusted) == "127.0.0.1"


def test_only_a_trusted_proxy_says_the_client_used_https():
    trusted = trusted_networks("10.0.0.0/8")
    assert forwarded_https("10.0.0.2", {"x-forwarded-proto": "https"}, trusted)
    # The nearest proxy's word counts: a client's own header in front of it does not.
    assert not forwarded_https("10.0.0.2", {"x-forwarded-proto": "https, http"}, trusted)
    assert not forwarded_https("192.0.2.1", {"x-forwarded-proto": "https"}, trusted)
    assert not forwarded_https("10.0.0.2", {}, trusted)
    assert not forwarded_https("not-an-address", {"x-forwarded-proto": "https"}, trusted)
    assert not forwarded_https(None, {"x-forwarded-proto": "https"}, trusted)
