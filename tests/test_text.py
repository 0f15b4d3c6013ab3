"""Control characters from payloads and headers are escaped wherever they are printed: the CLI and the logs."""

from __future__ import annotations

import logging

from app.logs import ConsoleFormatter, RedactSecrets
from app.store.db import create_engine
from app.store.models import utcnow
from app.text import counted, escape_controls, escape_values
from tests.clitools import cli
from tests.factories import record_event

# The example: clears the screen and sets the window title when printed raw.
HOSTILE = "checkout.session.completed\u001b[2J\u001b]0;PWNED\u0007"
SHOWN = "checkout.session.completed\\x1b[2J\\x1b]0;PWNED\\x07"


def test_controls_are_escaped_and_text_is_kept():
    assert escape_controls(HOSTILE) == SHOWN
    # C1 controls (CSI on its own), DEL, a lone carriage return and a bidirectional override as well.
    assert escape_controls("a\x9b2Jb\x7fc\rd\u202ee") == "a\\x9b2Jb\\x7fc\\x0dd\\u202ee"
    assert escape_controls("déjà vu ✓ 日本") == "déjà vu ✓ 日本"
    assert escape_controls("one\ntwo\tthree") == "one\\x0atwo\\x09three"
    assert escape_controls("one\ntwo\tthree\x1b", keep_lines=True) == "one\ntwo\tthree\\x1b"
    assert escape_values({"type\x07": [HOSTILE, 3, None]}) == {"type\\x07": [SHOWN, 3, None]}


async def test_the_events_command_prints_a_hostile_type_escaped(tmp_path, database_url):
    engine = create_engine(database_url)
    try:
        await record_event(
            engine,
            source="shopify",
            event_type=HOSTILE + "\nforged line",
            provider_id="p-1",
            payload={},
            headers={},
            occurred_at=None,
            outcomes=[],
            rules_version="v0",
            now=utcnow(),
        )
    finally:
        await engine.dispose()
    for args in (("events",), ("events", "--json")):
        done = cli(*args, cwd=tmp_path, DATABASE_URL=database_url)
        assert done.returncode == 0, done.stderr
        assert not any(c in done.stdout for c in "\x1b\x07"), done.stdout
    listing = cli("events", cwd=tmp_path, DATABASE_URL=database_url).stdout
    assert f"shopify/{SHOWN}\\x0aforged line" in listing
    assert len(listing.splitlines()) == 1


def test_log_lines_escape_the_message_and_the_context():
    record = logging.LogRecord("app", logging.INFO, "p", 1, "stored %s\nsecond line", (HOSTILE,), None)
    record.type = HOSTILE
    RedactSecrets().filter(record)
    line = ConsoleFormatter().format(record)
    assert "\x1b" not in line and "\x07" not in line
    assert f"stored {SHOWN}\nsecond line" in line and f"type={SHOWN}" in line


def test_a_traceback_keeps_its_lines_and_escapes_the_rest():
    try:
        raise ValueError(f"bad type {HOSTILE}")
    except ValueError as exc:
        record = logging.LogRecord("app", logging.ERROR, "p", 1, "failed", (), (type(exc), exc, exc.__traceback__))
    RedactSecrets().filter(record)
    assert record.exc_text is not None and f"ValueError: bad type {SHOWN}" in record.exc_text
    assert "\x1b" not in record.exc_text and len(record.exc_text.splitlines()) > 2


def test_counted_words_are_plural_unless_one():
    assert [counted(n, "source") for n in (0, 1, 2)] == ["0 sources", "1 source", "2 sources"]
