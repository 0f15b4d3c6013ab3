"""`systeme-flow contact EMAIL`: a person's whole story, as the dashboard's contact page shows it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli.operator import other_mode, run_job
from app.cli.run import fail, rules_or_exit, settings_or_exit
from app.config import Settings
from app.operator.modes import service_modes
from app.operator.story import contact_story
from app.pipeline.dispatch import Dispatcher
from app.text import counted


def _action(a: dict[str, Any], modes: Mapping[str, str | None]) -> str:
    said = a.get("outcome") or a.get("last_error") or a.get("note") or ""
    due = f" due {a['next_attempt_at']}" if a["status"] in ("scheduled", "pending") and a.get("next_attempt_at") else ""
    calls = f" ({counted(len(a['calls']), 'API call')})" if a.get("calls") else ""
    line = f"    {a['id']}  {a['status']:<17} {a['kind']} {json.dumps(a['params'])}{due}{calls}  {said}".rstrip()
    current = modes.get(a.get("account") or "default")
    return line + other_mode(a.get("mode"), current, "never runs here: planned under")


def story_lines(story: dict[str, Any], modes: Mapping[str, str | None] | None = None) -> list[str]:
    """The story for people; with `modes` (the accounts' modes now), what another mode left says so."""
    modes = modes or {}
    lines = [f"{story['email']}: {counted(story['events_total'], 'event')}"]
    for event in story["events"]:
        paid = event["payment"]
        money = (
            f"  {paid['kind']} {paid['amount'] or '?'} {paid['currency'] or ''} {paid['product'] or ''}" if paid else ""
        )
        head = f"{event['received_at'][:19]}  {event['id']}  {event['source']}/{event['type'] or '-'}{money}".rstrip()
        lines.append(head + other_mode(event.get("mode"), modes.get("default"), "arrived under"))
        for rule in event["rules"]:
            lines.append(f"  rule {rule['rule_id']}: {rule['decision']} ({rule['reason']})")
            lines += [_action(a, modes) for a in event["actions"] if a["rule_id"] == rule["rule_id"]]
    if story["scheduled"]:
        lines.append("scheduled:")
        lines += [_action(a, modes) for a in story["scheduled"]]
    for known in story["mirror"]:
        facts = known["facts"] if isinstance(known["facts"], dict) else {}
        # The mirror keeps tags by id (with their names), and courses and communities by the enrollment or
        # membership id, None when the API did not tell it: only False means the person lacks it.
        parts = [f"contact {known['contact_id']}"]
        if facts.get("tags"):
            parts.append("tags " + ", ".join(str(name) for name in facts["tags"].values()))
        for what in ("courses", "communities"):
            held = [str(k) for k, v in (facts.get(what) or {}).items() if v is not False]
            if held:
                parts.append(f"{what} {', '.join(held)}")
        lines.append(f"mirror [{known['account']}]: " + "; ".join(parts))
    return lines


def cmd_contact(args: argparse.Namespace) -> None:
    if not args.email.strip():
        fail("contact: an email address is required (got an empty one)")
    sources = rules_or_exit(settings_or_exit().rules_file, strict_env=False).file.sources

    modes: dict[str, str | None] = {}

    async def job(settings: Settings, engine: AsyncEngine, _: Dispatcher | None) -> Any:
        modes.update(await service_modes(engine, settings))
        return await contact_story(engine, sources, args.email)

    story = run_job(job, args.command)
    if args.json:
        print(json.dumps(story, indent=2, default=str))
    else:
        print("\n".join(story_lines(json.loads(json.dumps(story, default=str)), modes)))


def add_commands(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "contact", help="a person's whole story: events, rule decisions, actions, scheduled steps, the mirror"
    )
    parser.add_argument("email")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_contact)
