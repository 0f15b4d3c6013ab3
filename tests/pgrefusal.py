"""A PostgreSQL server that is shutting down: it answers every connection's start-up with FATAL 57P03.

That is what a real server says during a fast shutdown or while it starts (`the database system is shutting
down`); asyncpg raises `CannotConnectNowError` for it while the connection opens, outside SQLAlchemy's wrapping.
"""

from __future__ import annotations

import socket
import struct
import threading

SSL_REQUEST = 80877103


def _error_response(code: str, message: str) -> bytes:
    fields = b"".join(kind + value.encode() + b"\0" for kind, value in ((b"S", "FATAL"), (b"V", "FATAL")))
    fields += b"C" + code.encode() + b"\0" + b"M" + message.encode() + b"\0" + b"\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class ShuttingDownPostgres:
    """Listens on a free loopback port until closed; `url` is an asyncpg URL for SQLAlchemy."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/test"
        self.refused = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ShuttingDownPostgres:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                length, code = struct.unpack("!ii", _read_exact(conn, 8))
                if code == SSL_REQUEST:
                    conn.sendall(b"N")
                    length, code = struct.unpack("!ii", _read_exact(conn, 8))
                _read_exact(conn, length - 8)  # the start-up parameters
                conn.sendall(_error_response("57P03", "the database system is shutting down"))
                self.refused += 1
            except (ConnectionError, OSError):
                return
