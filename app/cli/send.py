"""Trying rules end to end: `samples` lists and prints sample events, `send` signs one and posts it to a service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.run import fail, rules_or_exit, settings_or_exit
from app.config import SERVICE_URL
from app.errors import NotFound
from app.health import unreachable_hint
from app.rules.loader import LoadedRules
from app.rules.schema import SourceConfig
from app.samples import find_sample, samples_for, signed_request
from app.samples.signing import sample_body

_BOM = b"\xef\xbb\xbf"
# The header a shop's webhook names its topic in (the event type the rules' `on` matches).
TOPIC_HEADERS = {"shopify": "X-Shopify-Topic", "woocommerce": "X-WC-Webhook-Topic"}


def read_event_file(path: str, command: str) -> tuple[bytes, dict[str, str]]:
    """A body from a file (or - for stdin) and its content type: JSON when it looks like JSON, else a form."""
    try:
        body = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        fail(f"{command}: cannot read {path}: {exc.strerror or exc}")
    if body.lstrip().removeprefix(_BOM)[:1] in (b"{", b"["):
        try:
            json.loads(body)
        except UnicodeDecodeError:
            fail(f"{command}: {path} is not UTF-8 text")
        except json.JSONDecodeError as exc:
            # Some of json's messages end in "at", waiting for the position ("Invalid control character at").
            where = exc.msg if exc.msg.endswith(" at") else f"{exc.msg} at"
            fail(f"{command}: {path}: JSON syntax error: {where} line {exc.lineno} column {exc.colno}")
        return body, {"content-type": "application/json"}
    return body, {"content-type": "application/x-www-form-urlencoded"}


def source_or_exit(loaded: LoadedRules, name: str, command: str) -> SourceConfig:
    config = loaded.file.sources.get(name)
    if config is None:
        fail(f"{command}: no source {name!r} in {loaded.path} (sources: {', '.join(loaded.file.sources) or 'none'})")
    return config


def sample_or_exit(config: SourceConfig, name: str, command: str) -> tuple[bytes, dict[str, str]]:
    try:
        sample = find_sample(config.type, name)
    except NotFound as exc:
        fail(f"{command}: {exc.message}")
    return sample_body(config, sample), {"content-type": sample.content_type, **sample.headers}


def parse_headers(values: list[str], command: str) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            fail(f"{command}: --header {value!r}: expected NAME:VALUE")
        headers[name.strip()] = content.strip()
    return headers


def cmd_samples(args: argparse.Namespace) -> None:
    loaded = rules_or_exit(args.rules or settings_or_exit().rules_file, strict_env=False)
    if args.sample:
        if not args.source:
            fail("samples: give --source NAME with a sample name")
        body, _ = sample_or_exit(source_or_exit(loaded, args.source, "samples"), args.sample, "samples")
        print(body.decode())
        return
    for name, config in loaded.file.sources.items():
        if args.source and name != args.source:
            continue
        print(f"{name} ({config.type}):")
        for sample in samples_for(config.type):
            print(f"  {sample.name:<22} {sample.description}")


def _describe(answer: Any, url: str) -> str:
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code == 202:
        return f"202 stored as {body.get('event_id')}: {url}/ui/events/{body.get('event_id')}"
    if answer.status_code == 200 and body.get("duplicate"):
        return f"200 a redelivery of {body.get('event_id')}: nothing new stored"
    if answer.status_code == 303:
        return f"303 stored; the visitor is sent to {answer.headers.get('location')}"
    return f"{answer.status_code} refused: {body.get('error') or answer.text.strip()[:200]}"


def _topic_or_exit(loaded: LoadedRules, source: str, config: SourceConfig, headers: dict[str, str]) -> None:
    """A shop's webhook names its topic in a header, and the rules choose by it: without one, the event would be
    stored as "no rule matched". Say which header, and the topics this source's rules listen to."""
    header = TOPIC_HEADERS.get(config.type)
    if header is None or any(name.lower() == header.lower() for name in headers):
        return
    topics = sorted({on.split("/", 1)[1] for r in loaded.file.rules for on in r.on if on.startswith(f"{source}/")})
    example = topics[0] if topics else "TOPIC"
    listened = f" (the rules of '{source}' listen to {', '.join(topics)})" if topics else ""
    fail(f"send: a {config.type} webhook names its topic in {header}: add --header {header}:{example}{listened}")


def prepare(
    loaded: LoadedRules, source: str, event: str, extra: list[str]
) -> tuple[bytes, dict[str, str], dict[str, str]]:
    """The body, headers and query `send` posts: a sample or a file, signed as the source's provider would."""
    config = source_or_exit(loaded, source, "send")
    names = {s.name for s in samples_for(config.type)}
    if event in names:
        body, headers = sample_or_exit(config, event, "send")
    elif event == "-" or Path(event).exists():
        body, headers = read_event_file(event, "send")
    else:
        fail(f"send: {event!r} is neither a file nor a sample of '{config.type}' ({', '.join(sorted(names))})")
    headers.update(parse_headers(extra, "send"))
    _topic_or_exit(loaded, source, config, headers)
    return (body, *signed_request(config, body, headers))


def cmd_send(args: argparse.Namespace) -> None:
    import httpx

    loaded = rules_or_exit(args.rules or settings_or_exit().rules_file)
    body, headers, query = prepare(loaded, args.source, args.event, args.header)
    url = (args.url or settings_or_exit().systeme_flow_url).rstrip("/")
    try:
        answer = httpx.post(f"{url}/hooks/{args.source}", content=body, headers=headers, params=query, timeout=30)
    except httpx.HTTPError as exc:
        fail(f"send: cannot reach {url}: {exc} ({unreachable_hint()})")
    print(_describe(answer, url))
    if answer.status_code >= 400:
        sys.exit(1)


def add_commands(commands: Any) -> None:
    samples = commands.add_parser("samples", help="list the sample events of each source, or print one")
    samples.add_argument("sample", nargs="?", help="print this sample's body (with --source)")
    samples.add_argument("--source", help="only this source")
    samples.add_argument("--rules", help="the rules file (default: RULES_FILE)")
    samples.set_defaults(func=cmd_samples)

    send = commands.add_parser("send", help="sign an event as its provider would and post it to a running service")
    send.add_argument("event", metavar="SAMPLE|FILE", help="a sample name (see `samples`), a file, or - for stdin")
    send.add_argument("--source", required=True, help="the source name in the rules file")
    send.add_argument("--url", help=f"the service (default: SYSTEME_FLOW_URL, else {SERVICE_URL})")
    send.add_argument("--rules", help="the rules file with the source's secret (default: RULES_FILE)")
    send.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable (e.g. X-Webhook-Event)")
    send.set_defaults(func=cmd_send)
