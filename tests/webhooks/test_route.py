"""`POST /hooks/{source}` has one route, documented in the OpenAPI document, answered ahead of the stack."""

from __future__ import annotations

import httpx
from starlette.routing import Route

from app.main import create_app
from tests.conftest import running


def test_one_route_receives_hooks_and_the_endpoint_stays_documented(make_settings):
    app = create_app(make_settings())
    # No second entry ahead of the routers: the one route is the documented one, its POSTs answered ahead of the
    # stack by app.main.SystemeFlow with the same handler.
    assert [r for r in app.router.routes if isinstance(r, Route) and r.path == "/hooks/{source}"] == []
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
