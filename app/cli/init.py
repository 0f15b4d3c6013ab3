"""`systeme-flow init`: a commented rules file for a common setup, the `.env` lines it needs, then `check`."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.config import is_placeholder, rules_environment
from app.errors import RulesError
from app.recipes import RECIPES, Recipe, Variable
from app.rules.loader import load_rules
from app.text import counted


def _list_recipes() -> None:
    print("recipes (systeme-flow init --recipe NAME [--dir DIR] [--force]):")
    width = max(len(name) for name in RECIPES)
    for recipe in RECIPES.values():
        print(f"  {recipe.name:<{width}}  {recipe.summary}")


# Every recipe needs the operator token: without it the dashboard stays shut, and `.env.example`'s one is public.
_ADMIN = Variable("ADMIN_TOKEN", True, "the operator token: sign in at /ui and call /v1/... with it")
# And /metrics is closed with its own token: its counts per account are not for whoever reaches the port.
_METRICS = Variable("METRICS_TOKEN", True, "Prometheus' bearer token for GET /metrics (its `authorization` block)")


def _env_text(recipe: Recipe, known: Mapping[str, str], text: str) -> tuple[str, list[str], list[Variable]]:
    """The new `.env` text, the generated names, and the variables the provider gives (still to set)."""
    lines: list[str] = []
    generated: list[str] = []
    todo: list[Variable] = []
    for variable in (*recipe.variables, _ADMIN, _METRICS):
        value = known.get(variable.name)
        if value is not None and not (variable.generated and is_placeholder(value)):
            continue  # never overwrite a value already set, in `.env` or in the environment
        if variable.generated:
            line = f"{variable.name}={secrets.token_urlsafe(32)}"
            # A placeholder copied from `.env.example` is replaced where it stands.
            text, replaced = re.subn(rf"^[ \t]*(export[ \t]+)?{variable.name}[ \t]*=.*$", line, text, flags=re.M)
            if not replaced:
                lines += [f"# {variable.where}", line]
            generated.append(variable.name)
        else:
            todo.append(variable)
            if f"# {variable.name}=" not in text:
                lines += [f"# Given by the provider: {variable.where}", f"# {variable.name}="]
    if lines:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "\n".join([f"# systeme-flow init --recipe {recipe.name}", *lines]) + "\n"
    return text, generated, todo


def _write_private(env_path: Path, text: str) -> None:
    """Write `.env` readable by its owner only, before any secret is in it (it may exist with looser rights)."""
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def cmd_init(args: argparse.Namespace) -> None:
    if not args.recipe:
        _list_recipes()
        return
    recipe = RECIPES.get(args.recipe)
    if recipe is None:
        _list_recipes()
        sys.exit(f"systeme-flow init: no recipe named {args.recipe!r}")
    folder = Path(args.dir)
    rules_path, env_path = folder / "rules.yaml", folder / ".env"
    if rules_path.exists() and not args.force:
        sys.exit(f"systeme-flow init: {rules_path} exists; use --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    rules_path.write_text(recipe.text(), encoding="utf-8")
    print(f"wrote {rules_path}: {recipe.summary}")
    existing = env_path.read_text(encoding="utf-8") if env_path.exists() else ""
    text, generated, todo = _env_text(recipe, rules_environment(str(env_path)), existing)
    if text != existing:
        _write_private(env_path, text)
    for name in generated:
        print(f"added {name} to {env_path}: a fresh random value")
    for variable in todo:
        print(f"to do: set {variable.name} in {env_path}, from {variable.where}")
    _check(rules_path, env_path)


def _check(rules_path: Path, env_path: Path) -> None:
    """`check` on the new file; a variable the provider has yet to give is a warning, not a failure."""
    try:
        loaded = load_rules(rules_path, rules_environment(str(env_path)), strict_env=False)
    except RulesError as exc:
        print("\n".join(exc.problems))
        sys.exit(1)
    for problem in loaded.warnings:
        print(problem)
    print(f"{counted(len(loaded.file.rules), 'rule')}, {counted(len(loaded.file.sources), 'source')}: OK")


def add_commands(commands: Any) -> None:
    init = commands.add_parser("init", help="write a commented rules.yaml for a common setup (no recipe: list them)")
    init.add_argument("--recipe", help="one of: " + ", ".join(RECIPES))
    init.add_argument("--dir", default=".", help="where to write rules.yaml and .env (default: here)")
    init.add_argument("--force", action="store_true", help="replace an existing rules.yaml")
    init.set_defaults(func=cmd_init)
