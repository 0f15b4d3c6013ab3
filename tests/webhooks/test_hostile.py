"""Hostile input over real HTTP (issue 11): each answer is a quick, clear 4xx, and nothing is stored."""

from __future__ import annotations

import json
import socket
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from app.store.db import create_engine
from app.store.models import utcnow
from tests.conftest import operator, planned, post_stripe, running
from tests.factories import (
    FORM_TOKEN,
    RULES,
    php_json,
    record_event,
    standard_headers,
    stripe_checkout,
    stripe_headers,
    systeme_headers,
    systeme_sale,
    write_rules,
)
from tests.flows import count_rows
from tests.provider_payloads import paddle, rules_with_every_source

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
        body = "&".join(f"a={i}" for i in range(999)).encode() + b"&email=r@yopmail.com"
        answer = await post(service, f"/hooks/contact?token={FORM_TOKEN}", content=body, headers=FORM)
        assert answer.status_code == 202, answer.text
        async with operator(service) as http:
            event = (await http.get(f"/v1/events/{answer.json()['event_id']}")).json()
        assert event["payload"]["a"] == [str(i) for i in range(999)]
        assert event["payload"]["email"] == "r@yopmail.com"

    @pytest.mark.parametrize("query", [{}, {"token": "wrong"}])
    async def test_the_token_is_checked_before_the_body_is_parsed(self, service, sqlite_url, query):
        # A body that cannot be parsed: without the right token, the answer says so before parsing (401, not 400).
        body = "&".join(["a=1"] * 100_000).encode() + b"&email=\xff"
        answer = await post(service, "/hooks/contact", content=body, headers=FORM, params=query)
        assert answer.status_code == 401, answer.text
        assert await count_rows(sqlite_url) == (0, 0)


BIG_ORDER = """
  - id: big-order
    on: stripe/checkout.session.completed
    if: event.data.object.amount_total > 50000
    contact: { email: "{{ event.data.object.customer_details.email.lower() }}" }
    actions: [ { tag: Big spender } ]
  - id: greeting
    on: stripe/checkout.session.completed
    contact:
      email: "{{ event.data.object.customer_details.email }}"
      first_name: "{{ event.data.object.customer_details.name.split(' ')[0] }}"
      fields: { amount: "{{ event.data.object.amount_total / event.data.object.quantity }}" }
    actions: [ { tag: Greeted } ]
"""


async def test_a_rule_that_fails_over_a_payload_only_fails_itself(make_settings, database_url, tmp_path):
    """Stripe's setup mode sends `amount_total: null`: a comparison over it is that rule's "not matched"."""
    settings = make_settings(database_url=database_url, systeme_api_key=None)
    write_rules(tmp_path, RULES + BIG_ORDER)
    event = stripe_checkout("nul@yopmail.com")
    event["data"]["object"].update(amount_total=None, quantity=0)
    del event["data"]["object"]["customer_details"]["name"]
    with running(settings) as url:
        event_id = await post_stripe(url, event)
        async with operator(url) as http:
            stored = (await http.get(f"/v1/events/{event_id}")).json()
    decisions = {r["rule_id"]: (r["decision"], r["reason"]) for r in stored["rules"]}
    assert decisions["masterclass-purchase"] == ("matched", "matched")
    assert decisions["big-order"][0] == "not_matched"
    assert "event.data.object.amount_total was null" in decisions["big-order"][1]
    assert decisions["greeting"][0] == "invalid" and "TypeError" in decisions["greeting"][1]
    assert sorted(a["rule_id"] for a in stored["actions"]) == ["masterclass-purchase"] * 3


BAD_TIMESTAMPS = ["\xb2", "1" * 400, "1" * 5_000, "-1", "1e9", "1_0", "\u0661\u0662"]


class TestMalformedTimestamps:
    """Unauthenticated garbage in a signature's timestamp is a 401, whatever its digits."""

    @pytest.fixture
    def every_source(self, make_settings, sqlite_url, tmp_path):
        settings = make_settings(database_url=sqlite_url, systeme_api_key=None)
        write_rules(tmp_path, rules_with_every_source(RULES))
        with running(settings) as url:
            yield url

    @staticmethod
    def latin1(headers: dict[str, str]) -> dict[str, bytes]:
        # Header bytes as a client may send them; servers decode them as latin-1.
        return {k: v.encode("latin-1", "replace") for k, v in headers.items()}

    @pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
    async def test_stripe(self, every_source, sqlite_url, timestamp):
        body = b'{"id": "evt_1", "type": "x"}'
        headers = {**stripe_headers(body), "Stripe-Signature": f"t={timestamp},v1=00"}
        answer = await post(every_source, "/hooks/stripe", content=body, headers=self.latin1(headers))
        assert answer.status_code == 401, answer.text
        assert await count_rows(sqlite_url) == (0, 0)

    @pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
    async def test_standard_webhooks(self, every_source, sqlite_url, timestamp):
        body = b'{"type": "user.created"}'
        headers = {**standard_headers(body), "webhook-timestamp": timestamp}
        answer = await post(every_source, "/hooks/partner", content=body, headers=self.latin1(headers))
        assert answer.status_code == 401, answer.text
        assert await count_rows(sqlite_url) == (0, 0)

    @pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
    async def test_paddle(self, every_source, sqlite_url, timestamp):
        body, headers = paddle()
        headers["Paddle-Signature"] = f"ts={timestamp};h1=00"
        answer = await post(every_source, "/hooks/paddle", content=body, headers=self.latin1(headers))
        assert answer.status_code == 401, answer.text
        assert await count_rows(sqlite_url) == (0, 0)

    async def test_a_json_integer_too_long_to_read_is_a_400(self, every_source, sqlite_url):
        body = b'{"id": "evt_2", "type": "x", "n": ' + b"9" * 5_000 + b"}"
        answer = await post(every_source, "/hooks/stripe", content=body, headers=stripe_headers(body))
        assert answer.status_code == 400, answer.text
        assert "not valid JSON" in answer.json()["error"]
        assert await count_rows(sqlite_url) == (0, 0)


def _checkout_with(name_json: str, *, extra: str = "") -> bytes:
    """A signed-ready Stripe checkout whose customer name is the raw JSON text `name_json`."""
    event = stripe_checkout(f"odd-{uuid.uuid4().hex[:8]}@yopmail.com")
    event["data"]["object"]["customer_details"]["name"] = "NAME"
    return (
        json.dumps(event)
        .replace('"NAME"', name_json)
        .replace('"livemode": false', f'"livemode": false{extra}')
        .encode()
    )


ODD_BODIES = {
    "nul": _checkout_with('"Ada\\u0000Lovelace"'),
    "lone surrogate": _checkout_with('"Ada\\ud800"'),
    "nul in a key": _checkout_with('"Ada"', extra=', "k\\u0000": 1'),
    "NaN": _checkout_with("NaN"),
    "Infinity": _checkout_with('"Ada"', extra=', "n": Infinity, "m": -Infinity'),
    "1e400": _checkout_with('"Ada"', extra=', "n": 1e400'),
    "huge integer": _checkout_with('"Ada"', extra=', "n": ' + "9" * 4_000),
    "nul in the type": _checkout_with('"Ada"').replace(b'"checkout.session.completed"', b'"checkout\\u0000"'),
    "absurd created": _checkout_with('"Ada"').replace(b'"created": ', b'"created": 99999999999999999999'),
}


async def _readable(url: str, event_id: str) -> dict:
    """The event through the API and the dashboard, and the actions list: every one answers 200, once the rules
    judged it (its actions are planned just after the answer)."""
    await planned(url, event_id)
    async with operator(url) as http:
        event = await http.get(f"/v1/events/{event_id}")
        assert event.status_code == 200, event.text
        page = await http.get(f"/ui/events/{event_id}")
        assert page.status_code == 200, page.text
        listed = await http.get("/v1/actions", params={"limit": 500})
        assert listed.status_code == 200, listed.text
        assert (await http.get("/v1/events")).status_code == 200
        assert (await http.get("/ui")).status_code == 200
    return dict(event.json())


class TestOddPayloads:
    """What a signed payload contains is stored in a form every database takes and every page shows."""

    @pytest.mark.parametrize("name", list(ODD_BODIES))
    async def test_a_signed_odd_payload_is_stored_and_readable(self, make_settings, database_url, name):
        body = ODD_BODIES[name]
        with running(make_settings(database_url=database_url, systeme_api_key=None)) as url:
            answer = await post(url, "/hooks/stripe", content=body, headers=stripe_headers(body))
            assert answer.status_code == 202, answer.text
            event = await _readable(url, answer.json()["event_id"])
        assert json.dumps(event, allow_nan=False)

    async def test_text_is_escaped_and_non_finite_numbers_become_strings(self, make_settings, database_url):
        body = _checkout_with('"Ada\\u0000\\ud800"', extra=', "n": NaN, "m": 1e400')
        with running(make_settings(database_url=database_url, systeme_api_key=None)) as url:
            event_id = (await post(url, "/hooks/stripe", content=body, headers=stripe_headers(body))).json()["event_id"]
            event = await _readable(url, event_id)
        assert event["payload"]["data"]["object"]["customer_details"]["name"] == "Ada\\u0000\\ud800"
        assert (event["payload"]["n"], event["payload"]["m"]) == ("NaN", "Infinity")
        (first,) = [a for a in event["actions"] if a["seq"] == 0]
        assert first["contact"]["fields"]["first_name"] == "Ada\\u0000\\ud800"

    @pytest.mark.parametrize(
        "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59+00:00"]
    )
    async def test_an_absurd_event_time_is_dropped(self, make_settings, database_url, when):
        body = php_json(systeme_sale())
        headers = {**systeme_headers(body), "X-Webhook-Event-Timestamp": when}
        with running(make_settings(database_url=database_url)) as url:
            answer = await post(url, "/hooks/systeme", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
            event = await _readable(url, answer.json()["event_id"])
        assert event["occurred_at"] is None
        assert event["actions"] and all(a["order_key"].startswith(event["received_at"][:10]) for a in event["actions"])

    async def test_a_payload_nested_too_deeply_is_a_400(self, make_settings, database_url):
        body = b'{"id": "evt_deep", "type": "x", "a": ' + b"[" * 900 + b"]" * 900 + b"}"
        with running(make_settings(database_url=database_url)) as url:
            answer = await post(url, "/hooks/stripe", content=body, headers=stripe_headers(body))
        assert answer.status_code == 400, answer.text
        assert "nested" in answer.json()["error"]
        assert await count_rows(database_url) == (0, 0)

    async def test_explain_judges_what_ingest_would_store(self, make_settings, sqlite_url):
        body = b'{"source": "stripe", "payload": {"type": "x", "n": NaN, "s": "a\\u0000"}}'
        deep = b'{"source": "stripe", "payload": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}"
        with running(make_settings(database_url=sqlite_url)) as url:
            async with operator(url) as http:
                answer = await http.post("/v1/rules/test", content=body, headers={"Content-Type": "application/json"})
                refused = await http.post("/v1/rules/test", content=deep, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert refused.status_code == 400 and "nested" in refused.json()["error"]


class TestSystemeReplays:
    """Only a Systeme.io body is signed: its unsigned headers cannot make a captured body a new event."""

    async def test_a_captured_body_resent_with_a_new_message_id_is_a_duplicate(self, service, sqlite_url):
        body = php_json(systeme_sale())
        first = await post(service, "/hooks/systeme", content=body, headers=systeme_headers(body, message_id="m-1"))
        again = await post(service, "/hooks/systeme", content=body, headers=systeme_headers(body, message_id="m-2"))
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
        assert (await count_rows(sqlite_url))[0] == 1

    async def test_a_delivery_stored_under_its_message_id_is_still_recognised(self, service, sqlite_url):
        # Events stored before bodies were the key carry the message id; a late retry of one is still a duplicate.
        engine = create_engine(sqlite_url)
        try:
            old = await record_event(
                engine,
                source="systeme",
                event_type="SALE_NEW",
                provider_id="m-old",
                payload={},
                headers={},
                occurred_at=None,
                outcomes=[],
                rules_version="v0",
                now=utcnow(),
            )
        finally:
            await engine.dispose()
        body = php_json(systeme_sale())
        again = await post(service, "/hooks/systeme", content=body, headers=systeme_headers(body, message_id="m-old"))
        assert again.status_code == 200 and again.json()["event_id"] == old.event_id

    async def test_the_event_type_comes_from_the_signed_body_when_it_has_one(self, service):
        body = php_json({"type": "SALE_CANCELED", **systeme_sale()})
        answer = await post(service, "/hooks/systeme", content=body, headers=systeme_headers(body))
        async with operator(service) as http:
            event = (await http.get(f"/v1/events/{answer.json()['event_id']}")).json()
        assert event["type"] == "SALE_CANCELED"


def _send_head(url: str, head: bytes, *, filler: bytes, total: int) -> int:
    """Send a request head that grows by `filler` up to `total` bytes; how many were sent before the server hung up."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        try:
            sock.sendall(head)
            while sent < total:
                sock.sendall(filler)
                sent += len(filler)
            sock.sendall(b"\r\n\r\n")
            sock.recv(1024)
        except OSError:
            pass
    return sent


class TestHeaderLimits:
    @pytest.mark.parametrize(
        ("head", "filler"),
        [
            (b"POST /hooks/stripe HTTP/1.1\r\nHost: t\r\nX-Big: ", b"a" * 65_536),
            (
                b"POST /hooks/stripe HTTP/1.1\r\nHost: t\r\n",
                b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 500) for i in range(100)),
            ),
            (b"POST /hooks/stripe HTTP/1.1\r\nHost: t\r\nStripe-Signature: t=1", b",v1=00" * 10_000),
            (b"GET /healthz?", b"q" * 65_536),
        ],
    )
    async def test_headers_over_the_limit_are_cut_off_before_they_are_buffered(self, service, head, filler):
        total = 32 * 1024 * 1024
        sent = _send_head(service, head, filler=filler, total=total)
        assert sent < total
        async with httpx.AsyncClient(base_url=service) as http:
            assert (await http.get("/healthz")).status_code == 200

    async def test_the_limit_counts_headers_not_bodies(self, service):
        event = stripe_checkout("big@yopmail.com")
        event["data"]["object"]["metadata"]["notes"] = "n" * 500_000
        body = json.dumps(event).encode()
        headers = {**stripe_headers(body), "X-Padding": "p" * 8_000}
        answer = await post(service, "/hooks/stripe", content=body, headers=headers)
        assert answer.status_code == 202, answer.text

    async def test_too_many_signature_entries_are_refused(self, service, sqlite_url):
        body = json.dumps(stripe_checkout()).encode()
        good = stripe_headers(body)["Stripe-Signature"]
        headers = {**stripe_headers(body), "Stripe-Signature": good + ",v1=00" * 40}
        answer = await post(service, "/hooks/stripe", content=body, headers=headers)
        assert answer.status_code == 401 and "too many" in answer.json()["error"]
        assert await count_rows(sqlite_url) == (0, 0)
