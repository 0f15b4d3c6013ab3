"""Hostile connections against the real served service (issue 24): slow heads, slow bodies, idle sockets and
floods of connections are each cut off, while /healthz and signed webhooks keep being answered.

The limits are shortened where waiting for a default (60 s for a body) would make the test a minute long;
`test_the_defaults_are_the_documented_ones` checks the defaults themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import Settings
from app.server import server_options
from tests.conftest import ADMIN, running
from tests.factories import stripe_checkout, stripe_headers

ROOT = Path(__file__).resolve().parents[1]
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(url: str) -> Connection:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def until_closed(reader: asyncio.StreamReader, timeout: float = 20) -> bytes:
    """Everything the server sends until it hangs up (a test that waits longer than `timeout` fails).

    Read a chunk at a time: a piece the client sends after the server's answer and close is answered with a reset,
    and `reader.read()` would then raise and drop the answer it already holds."""

    async def read_all() -> bytes:
        received = b""
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received

    return await asyncio.wait_for(read_all(), timeout)


async def trickle(url: str, head: bytes, pieces: list[bytes], every: float) -> tuple[bytes, int]:
    """Send `head`, then one piece every `every` seconds until the server hangs up: (its answer, pieces sent)."""
    reader, writer = await connect(url)
    answer = asyncio.create_task(until_closed(reader))
    sent = 0
    try:
        writer.write(head)
        for piece in pieces:
            await asyncio.wait([answer], timeout=every)
            if answer.done():
                break
            writer.write(piece)
            await writer.drain()
            sent += 1
    except ConnectionError:
        pass
    finally:
        writer.close()
    return await answer, sent


async def still_served(url: str) -> None:
    """/healthz answers and a signed Stripe delivery is stored, each within the client's usual 10 s."""
    body = json.dumps(stripe_checkout()).encode()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        answer = await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_the_defaults_are_the_documented_ones():
    settings = Settings(_env_file=None)
    defaults = {
        "HEAD_TIMEOUT_SECONDS": (settings.head_timeout_seconds, 10),
        "BODY_TIMEOUT_SECONDS": (settings.body_timeout_seconds, 60),
        "KEEPALIVE_TIMEOUT_SECONDS": (settings.keepalive_timeout_seconds, 5),
        "MAX_CONNECTIONS": (settings.max_connections, 2048),
    }
    settings_page = (ROOT / "docs" / "settings.md").read_text()
    for name, (value, documented) in defaults.items():
        assert value == documented, name
        assert re.search(rf"^\| `{name}` \| `?{documented}`? ", settings_page, re.M), (
            f"{name} = {documented} in docs/settings.md"
        )
    options = server_options(settings)
    protocol = options["http"]
    assert (protocol.head_timeout, protocol.body_timeout, protocol.max_connections) == (10, 60, 2048)
    assert options["timeout_keep_alive"] == 5


@pytest.mark.parametrize("name", ["HEAD_TIMEOUT_SECONDS", "BODY_TIMEOUT_SECONDS", "MAX_CONNECTIONS"])
def test_a_limit_of_zero_is_refused(name):
    with pytest.raises(ValueError, match="more than 0"):
        Settings.model_validate({name.lower(): 0})


async def test_a_head_sent_one_line_at_a_time_is_cut_off_with_a_408(make_settings, database_url):
    with running(make_settings(database_url=database_url, head_timeout_seconds=1)) as url:
        lines = [b"X-Slow-%d: 1\r\n" % i for i in range(100)]
        held = asyncio.create_task(trickle(url, b"POST /hooks/stripe HTTP/1.1\r\nHost: t\r\n", lines, 0.2))
        await still_served(url)
        answer, sent = await held
        assert status_of(answer) == 408 and b"request head not complete within 1 s" in answer
        assert sent < len(lines)  # cut off long before the 20 s the client would have taken
        await still_served(url)


async def test_a_body_sent_one_byte_at_a_time_is_cut_off_with_a_408(make_settings, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    with running(make_settings(database_url=database_url, body_timeout_seconds=1)) as url:
        body = json.dumps(stripe_checkout()).encode()
        head = b"POST /hooks/stripe HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in stripe_headers(body).items()).encode() + b"\r\n"
        held = asyncio.create_task(trickle(url, head, [b"x"] * 100, 0.2))
        await still_served(url)
        answer, sent = await held
        assert status_of(answer) == 408 and b"request body not complete within 1 s" in answer
        assert sent < 100
        await still_served(url)
    # The app that was reading the body sees the client gone: a debug line, not an error with a traceback.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("request body not complete" in r.getMessage() for r in caplog.records)


async def test_a_socket_that_sends_nothing_is_closed(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url, keepalive_timeout_seconds=0.5)) as url:
        silent, writer = await connect(url)
        assert await until_closed(silent) == b""
        writer.close()
        # The same after a first answer (uvicorn's own keep-alive timer).
        reader, writer = await connect(url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = await until_closed(reader)
        assert status_of(answer) == 200
        writer.close()


async def test_past_max_connections_a_connection_is_refused_with_a_503(make_settings, database_url):
    settings = make_settings(database_url=database_url, max_connections=20, keepalive_timeout_seconds=3)
    with running(settings) as url:
        opened = [await connect(url) for _ in range(30)]
        answers = await asyncio.gather(*(until_closed(reader) for reader, _ in opened))
        for _, writer in opened:
            writer.close()
        refused = [a for a in answers if status_of(a) == 503]
        assert len(refused) == 10 and answers.count(b"") == 20
        assert b"over 20 open connections: retry" in refused[0]
        await still_served(url)


async def test_many_slow_connections_at_once_leave_the_service_answering(make_settings, database_url):
    """500 connections each holding a half-sent head (on the default limits): every other client is served."""
    with running(make_settings(database_url=database_url)) as url:
        opened = [await connect(url) for _ in range(500)]
        for _, writer in opened:
            writer.write(b"POST /hooks/stripe HTTP/1.1\r\nHost: t\r\n")
        await asyncio.gather(*(writer.drain() for _, writer in opened))
        await still_served(url)
        assert not any(reader.at_eof() for reader, _ in opened)
        for _, writer in opened:
            writer.close()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/hooks/stripe", {"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"}),
        ("/v1/rules/test", {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"}),
        ("/ui/login", {"Content-Type": "application/x-www-form-urlencoded"}),
    ],
)
async def test_a_client_hanging_up_mid_body_is_one_debug_line(make_settings, sqlite_url, caplog, path, headers):
    caplog.set_level(logging.DEBUG)
    with running(make_settings(database_url=sqlite_url)) as url:
        reader, writer = await connect(url)
        head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode() + b'{"type": "x')
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        for _ in range(100):
            hangups = [r for r in caplog.records if "hung up" in r.getMessage()]
            if hangups:
                break
            await asyncio.sleep(0.05)
        await still_served(url)
    assert [(r.levelno, r.getMessage()) for r in hangups] == [
        (logging.DEBUG, f"POST {path}: the client hung up before its request was read")
    ]
    assert hangups[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
