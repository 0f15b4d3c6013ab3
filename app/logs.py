"""Logging: JSON lines (or readable console lines in a terminal), with secrets scrubbed from every record and
control characters escaped."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from app.text import escape_controls

_QUERY_SECRET = re.compile(r"([?&](?:token|secret|key|api_key|access_token)=)[^&\s\"']+", re.IGNORECASE)
_CONTEXT = ("event_id", "rule_id", "action_id", "source", "type", "kind", "duplicate")


class RedactSecrets(logging.Filter):
    """Replace known secret values and `?token=`-style query values with *** before anything is written."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        if "=" in text:
            text = _QUERY_SECRET.sub(r"\1***", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # Messages quote payloads and headers (an event's type, an error's text): their control characters are
        # escaped so that a log read in a terminal is not driven by them; a message's own line breaks stay.
        record.msg, record.args = escape_controls(self.scrub(message), keep_lines=True), ()
        if record.exc_text:
            record.exc_text = escape_controls(self.scrub(record.exc_text), keep_lines=True)
        return True


class QuietDeliveries(logging.Filter):
    """Drop uvicorn's access line for a delivery answered 2xx: its "event stored" line already says it, with the
    event's id; a refused one (4xx, 5xx) keeps its access line. Half the log lines of a burst, and their cost."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and args[1] == "POST":
            path, status = args[2], args[4]
            return not (
                isinstance(path, str) and path.startswith("/hooks/") and isinstance(status, int) and 200 <= status < 300
            )
        return True


class JsonFormatter(logging.Formatter):
    # One encoder for every line (json.dumps with `default` builds a new one each call), and the time's seconds
    # formatted once per second: a busy ingest writes two lines per delivery.
    _encoder = json.JSONEncoder(default=str)
    _second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        second = int(created)
        micro = round((created - second) * 1e6)  # as datetime.fromtimestamp rounds, half to even
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if second != self._second[0]:
            self._second = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
        return f"{self._second[1]}.{micro // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in _CONTEXT:
            if key in fields:
                line[key] = fields[key]
        if record.exc_text:
            line["exception"] = record.exc_text
        return self._encoder.encode(line)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={escape_controls(str(getattr(record, k)))}" for k in _CONTEXT if hasattr(record, k))
        text = super().format(record)
        return f"{text}  [{context}]" if context else text


def configure_logging(*, secrets: Iterable[str], style: str = "auto", level: int = logging.INFO) -> RedactSecrets:
    """Route every logger (uvicorn's and arq's too) through one scrubbed handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = style == "json" or (style == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.filters = [f for f in access.filters if not isinstance(f, QuietDeliveries)] + [QuietDeliveries()]
    # Alembic announces each of its plugins at INFO on every start: seven lines of noise before anything useful.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs each request's full URL, `?email=` included, where `forget` cannot reach it; the Systeme.io
    # client logs its calls without the query instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor
