"""The docs stay true: every setting and every command has its row, and the README's links lead somewhere."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from app.cli import build_parser
from app.config import Settings

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def table_rows(page: str) -> str:
    """The table rows of a docs page: a name mentioned only in prose is not documented."""
    return "\n".join(line for line in (DOCS / page).read_text().splitlines() if line.startswith("|"))


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every command and sub-command, as `connections list`."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix}{name}")
                found += commands(sub, f"{prefix}{name} ")
    return found


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as MkDocs' toc extension makes them (code blocks skipped)."""
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip()))
    return found


def fenced_block_after(text: str, heading: str) -> str:
    start = text.index(f" {heading}\n")
    opening = text.index("```sh\n", start)
    return text[opening : text.index("\n```\n", opening)]


def test_every_setting_is_in_the_settings_table():
    table = table_rows("settings.md")
    assert [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in table] == []


def test_every_command_is_in_the_commands_table():
    table = table_rows("commands.md")
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


def test_the_readme_links_lead_to_files_and_headings():
    # The docs site checks its own links (`mkdocs build --strict`); the README is outside it.
    broken = []
    for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", README):
        if "://" in target:
            continue
        path = ROOT / target
        if not path.exists() or (anchor and anchor not in anchors(path)):
            broken.append(f"{target}#{anchor}" if anchor else target)
    assert broken == []


def test_the_readme_walkthrough_is_the_one_in_the_docs():
    # tests/samples/test_examples.py runs this walk-through; the two copies must not drift apart.
    heading = "Try it safely against the simulator"
    walkthrough = fenced_block_after(README, heading)
    assert walkthrough == fenced_block_after((DOCS / "getting-started.md").read_text(), heading)
    assert "systeme-flow approve" in walkthrough
