"""`POST /hooks/{source}` is served by a plain Starlette route, and still documented in the OpenAPI document."""

from __future__ import annotations

import httpx
from starlette.routing import Route

from app.main import create_app
from app.webhooks.router import receive_plain
from tests.conftest import running


def test_the_plain_route_comes_first_and_the_endpoint_stays_documented(make_settings):
    app = create_app(make_settings())
    first = app.router.routes[0]
    assert isinstance(first, Route) and first.endpoint is receive_plain
    operation = app.openapi()["paths"]["/hooks/{source}"]["post"]
    assert operation["summary"] == "Receive"
    assert {"202", "200", "303", "400", "401", "404", "413", "415", "429", "503"} <= set(operation["responses"])


def test_other_methods_get_the_same_answers_as_before(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        get = httpx.get(f"{url}/hooks/stripe")
        head = httpx.head(f"{url}/hooks/stripe")
        unknown = httpx.head(f"{url}/hooks/nope")
    assert (get.status_code, get.json(), get.headers["allow"]) == (405, {"detail": "Method Not Allowed"}, "POST")
    assert (head.status_code, unknown.status_code) == (200, 404)
