"""JSON log lines: the time as datetime writes it, the context fields, and secrets scrubbed."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime

from app.logs import JsonFormatter, RedactSecrets


def test_the_time_is_what_datetime_writes_to_the_millisecond():
    formatter = JsonFormatter()
    edges = [0.0, 1.9996, 1.9999995, 1764170048.9999996, 1764170049.0005]
    for created in edges + [random.uniform(0, 4e9) for _ in range(20_000)]:
        assert formatter._time(created) == datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


def test_a_line_carries_its_context_and_no_secret():
    record = logging.LogRecord("uvicorn.access", logging.INFO, "p", 1, '"%s %s"', ("POST", "/hooks/f?token=abc"), None)
    record.event_id, record.duplicate, record.unrelated = "evt_1", False, "x"
    RedactSecrets(["hunter22"]).filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == '"POST /hooks/f?token=***"'
    assert (line["event_id"], line["duplicate"], "unrelated" in line) == ("evt_1", False, False)
