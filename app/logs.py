"""Logging: JSON lines (or readable console lines in a terminal), with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_QUERY_SECRET = re.compile(r"([?&](?:token|secret|key|api_key|access_token)=)[^&\s\"']+", re.IGNORECASE)
_CONTEXT = ("event_id", "rule_id", "action_id", "source", "type", "kind", "duplicate")


class RedactSecrets(logging.Filter):
    """Replace known secret values and `?token=`-style query values with *** before anything is written."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        text = _QUERY_SECRET.sub(r"\1***", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.scrub(message), ()
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT if hasattr(record, k))
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
    # Alembic announces each of its plugins at INFO on every start: seven lines of noise before anything useful.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs each request's full URL, `?email=` included, where `forget` cannot reach it; the Systeme.io
    # client logs its calls without the query instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor
