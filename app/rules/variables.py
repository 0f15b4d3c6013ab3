"""`${VAR}` in a rules file: expanded inside parsed string values (never in the raw text, so YAML stays intact),
and the placeholder values an unedited `.env` would bring in, refused where they land."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.config import is_placeholder
from app.rules.problems import Problems, Severity, position

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Expander:
    def __init__(self, problems: Problems, env: Mapping[str, str], strict_env: bool) -> None:
        self.problems = problems
        self.env = env
        # False: an unset variable is a warning, so CI can check a file without its secrets.
        self.strict_env = strict_env

    def substitute(self, node: Any, subject: str) -> None:
        """Replace `${VAR}` inside `node`'s string values, in place; each unset variable is one problem."""
        items: list[tuple[Any, Any]]
        if isinstance(node, CommentedMap):
            items = list(node.items())
        elif isinstance(node, CommentedSeq):
            items = list(enumerate(node))
        else:
            return
        for key, value in items:
            if isinstance(value, str) and "${" in value:
                for name in [m for m in VAR.findall(value) if m not in self.env]:
                    severity: Severity = "error" if self.strict_env else "warning"
                    self.problems.add(position(node, key), subject, f"environment variable {name} is not set", severity)
                # An unset variable stays as written, so it is reported once and not again as an empty secret.
                node[key] = VAR.sub(lambda m: self.env.get(m.group(1), m.group(0)), value)
            else:
                self.substitute(value, subject)

    def placeholder(self, body: Any, key: str, values: Iterable[str], subject: str, variables: list[str]) -> None:
        """An example value (`replace_me`) under `key` would let anyone post, or fail every call: refused at load,
        naming the `${VAR}` it came from (`variables`, read before expansion)."""
        if not any(is_placeholder(v) for v in values if v):
            return
        names = [n for n in variables if is_placeholder(self.env.get(n, ""))]
        origin = f" (from {', '.join('${' + n + '}' for n in names)})" if names else ""
        self.problems.add(
            position(body, key), subject, f"`{key}` still holds a placeholder value{origin}: set a real one"
        )


def variables_in(body: Any, keys: Iterable[str]) -> dict[str, list[str]]:
    """Which `${VAR}` each of `keys` names in `body`, before expansion."""
    return {key: VAR.findall(str(body.get(key, ""))) for key in keys} if isinstance(body, dict) else {}
