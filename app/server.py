"""How uvicorn serves the app: the same options for `systeme-flow serve` and the tests' servers.

uvicorn's default parser (httptools) buffers a request head of any size, and gives a connection all the time it
wants: a head sent one line every few seconds, a body trickled one byte at a time, or a socket that sends nothing
at all were each held open for as long as the client liked (uvicorn's keep-alive timer only starts after a first
response). The protocol below adds what a server facing the internet needs:

- a request head over MAX_HEADER_BYTES is answered 431 and the connection closed, before it is buffered;
- a connection that sends nothing is closed after KEEPALIVE_TIMEOUT_SECONDS (uvicorn's own timer, armed on
  connect as well as after each response);
- a head not complete HEAD_TIMEOUT_SECONDS after its first byte is answered 408 and closed;
- a body not complete BODY_TIMEOUT_SECONDS after its head is answered 408 (if no answer was started) and
  closed: a deadline rather than a minimum rate, so that a trickle of any speed costs at most that long;
- past MAX_CONNECTIONS open connections a new one is answered 503 at once and closed. uvicorn's own
  `limit_concurrency` is not enough: it is checked only once a head is complete, so sockets that never finish
  a head would hold file descriptors past it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings

log = logging.getLogger(__name__)
# Descriptors kept for everything that is not a client connection: the database pool, Redis, log files, ...
_SPARE_FILES = 256
# A flood of refused connections is one warning a minute, not one per connection.
_REFUSAL_WARNING_EVERY = 60.0


def _answer(status: bytes, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on a head's size and on the time each part of a request takes."""

    max_head_bytes: ClassVar[int] = 16 * 1024
    head_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 60.0
    max_connections: ClassVar[int] = 2048
    # Refusals since the last warning, and when it was written (per server: set by server_options).
    refusals: ClassVar[list[float]] = [0, 0.0]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._milestones = 0  # heads and messages completed on this connection
        self._in_body = False
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.max_connections:
            self._refuse_connection(transport)
            return
        super().connection_made(transport)  # type: ignore[arg-type]
        # uvicorn arms its idle timer only after a response: a socket that never sends a byte would stay open.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.parser is None:
            return
        if self._deadline is None and not self._in_body:
            # The first bytes of a head: it has head_timeout to be complete (cancelled by on_headers_complete).
            self._deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)
        seen = self._milestones
        super().data_received(data)
        # Only chunks that are all head count: one that ended a head or a message also carries other bytes.
        if self._milestones != seen or self._in_body or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._milestones += 1
        self._head_bytes = 0
        self._clear_deadline()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            # (A WebSocket upgrade is handed to uvicorn's WebSocket protocol, with its own timeouts.)
            self._in_body = True
            self._deadline = self.loop.call_later(self.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._milestones += 1
        self._in_body = False
        self._clear_deadline()
        super().on_message_complete()

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        self._deadline = None
        log.debug("%s: request head not complete within %g s; closed", self._peer(), self.head_timeout)
        # A pipelined head behind an answer still being written gets no 408 in the middle of that answer.
        idle = self.cycle is None or self.cycle.response_complete
        message = f"request head not complete within {self.head_timeout:g} s"
        self._close(_answer(b"408 Request Timeout", message), idle)

    def _body_too_slow(self) -> None:
        self._deadline = None
        log.debug("%s: request body not complete within %g s; closed", self._peer(), self.body_timeout)
        cycle = self.cycle
        if cycle is None:  # no request on this connection after all: nothing to answer
            self._close(b"", False)
            return
        answer = not cycle.response_started
        # The app waiting on the body is told the client is gone (a ClientDisconnect, logged as a hang-up) and
        # whatever it answers is dropped: the 408 below is the only answer on this connection.
        cycle.disconnected = True
        cycle.message_event.set()
        message = f"request body not complete within {self.body_timeout:g} s"
        self._close(_answer(b"408 Request Timeout", message), answer)

    def _close(self, answer: bytes, write: bool) -> None:
        if self.transport.is_closing():
            return
        if write:
            self.transport.write(answer)
        self.transport.close()

    def _refuse_head(self) -> None:
        self._clear_deadline()
        message = f"request headers over the {self.max_head_bytes}-byte limit"
        self._close(_answer(b"431 Request Header Fields Too Large", message), True)

    def _refuse_connection(self, transport: asyncio.BaseTransport) -> None:
        """Answer 503 before reading anything, and hang up: a refused connection holds nothing."""
        self._refused = True
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        transport.write(_answer(b"503 Service Unavailable", f"over {self.max_connections} open connections: retry"))
        transport.close()
        counts = self.refusals
        counts[0] += 1
        now = time.monotonic()
        if now - counts[1] >= _REFUSAL_WARNING_EVERY:
            log.warning("refused %d connection(s): MAX_CONNECTIONS (%d) are open", counts[0], self.max_connections)
            counts[0], counts[1] = 0, now

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


def connection_cap(wanted: int) -> int:
    """MAX_CONNECTIONS, with room for it in the open-file limit: the soft limit is raised as far as the hard one
    allows (many systems start services at 1024), and the cap lowered if even that is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        capped = max(soft - _SPARE_FILES, 1)
        log.warning("MAX_CONNECTIONS lowered from %d to %d: the open-file limit is %d", wanted, capped, soft)
        return capped
    return wanted


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run`."""
    limits = {
        "max_head_bytes": settings.max_header_bytes,
        "head_timeout": settings.head_timeout_seconds,
        "body_timeout": settings.body_timeout_seconds,
        "max_connections": connection_cap(settings.max_connections),
        "refusals": [0, 0.0],
    }
    protocol = type("LimitedProtocol", (LimitedProtocol,), limits)
    # proxy_headers off: X-Forwarded-* are read by the app, and only from FORWARDED_ALLOW_IPS peers.
    return {
        "http": protocol,
        "log_config": None,
        "proxy_headers": False,
        "timeout_keep_alive": settings.keepalive_timeout_seconds,
    }
