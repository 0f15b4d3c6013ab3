"""How uvicorn serves the app: the same options for `systeme-flow serve` and the tests' servers.

uvicorn's default parser (httptools) buffers a request head of any size: a client could send a 64 MB header, or a
million signature entries, and have it held in memory and parsed. The protocol below counts the bytes of each
request head as they arrive and answers 431 once they pass MAX_HEADER_BYTES, closing the connection.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings


class LimitedHeadProtocol(HttpToolsProtocol):
    max_head_bytes = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._milestones = 0  # heads and messages completed on this connection
        self._in_body = False

    def data_received(self, data: bytes) -> None:
        seen = self._milestones
        super().data_received(data)
        # Only chunks that are all head count: one that ended a head or a message also carries other bytes.
        if self._milestones != seen or self._in_body or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse()

    def on_headers_complete(self) -> None:
        self._milestones += 1
        self._head_bytes = 0
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._milestones += 1
        self._in_body = False
        super().on_message_complete()

    def _refuse(self) -> None:
        body = json.dumps({"error": f"request headers over the {self.max_head_bytes}-byte limit"}).encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run`."""
    protocol = type("LimitedHeadProtocol", (LimitedHeadProtocol,), {"max_head_bytes": settings.max_header_bytes})
    # proxy_headers off: X-Forwarded-* are read by the app, and only from FORWARDED_ALLOW_IPS peers.
    return {"http": protocol, "log_config": None, "proxy_headers": False}
