"""The README stays true: every setting and every command is documented in its table."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from app.cli import build_parser
from app.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start : README.index("\n## ", start + 1)]


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every command and sub-command, as `connections list`."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix}{name}")
                found += commands(sub, f"{prefix}{name} ")
    return found


def test_every_setting_is_in_the_settings_table():
    table = section("Settings")
    assert [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in table] == []


def test_every_command_is_in_the_commands_table():
    table = section("Commands")
    missing = []
    for command in commands(build_parser()):
        *parents, name = command.split()
        if parents:
            # A sub-command is listed in its parent's row (`connections list` / `create` / ...).
            rows = [line for line in table.splitlines() if f"systeme-flow {' '.join(parents)}" in line]
            found = any(re.search(rf"\b{re.escape(name)}\b", row) for row in rows)
        else:
            # A command has its own row, or shares one (`approve ID` / `reject ID` / `retry ID`...).
            found = re.search(rf"(`systeme-flow |/ `?){re.escape(name)}\b", table) is not None
        if not found:
            missing.append(command)
    assert missing == []
