"""The rules in force: the one owner of reading the rules file, for the API, the planner and the workers alike.

One error policy everywhere: a file that cannot be read is refused and logged, its problems kept for the dashboard
and `GET /v1/rules`, and the rules in force stay (none yet, at a first load). A file that failed is not read again
until it changes on disk (its stamp), so a worker's sweep does not parse a broken file every second.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from app.config import rules_environment
from app.errors import RulesError
from app.rules.engine import RuleSet
from app.rules.loader import load_rules
from app.rules.schema import RulesFile
from app.rules.templates import TemplateError

log = logging.getLogger(__name__)
Stamp = tuple[int, int]


def file_stamp(path: str | Path) -> Stamp | None:
    """What tells a changed file: its modification time and size; None if it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class RulesInForce:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.current: RuleSet | None = None
        # The problems of the last refused load; None once a load succeeds.
        self.error: list[str] | None = None
        self.stamp: Stamp | None = None
        self._listeners: list[Callable[[RulesFile], None]] = []
        # The API's watcher and a sweep may notice a change together; one of them reads the file.
        self._lock = threading.Lock()

    @property
    def file(self) -> RulesFile | None:
        return self.current.loaded.file if self.current is not None else None

    def on_change(self, listener: Callable[[RulesFile], None]) -> None:
        """Call `listener` with the new file each time other rules come into force (e.g. the account clients)."""
        self._listeners.append(listener)

    def load(self) -> bool:
        """Read the file now; False (logged, problems in `error`) if it is refused and the rules in force stay."""
        with self._lock:
            return self._load()

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed on disk since the last load; True if it was read and accepted."""
        with self._lock:
            stamp = file_stamp(self.path)
            if stamp is None or stamp == self.stamp:
                return False
            return self._load()

    def _load(self) -> bool:
        self.stamp = file_stamp(self.path)
        try:
            rules = RuleSet(load_rules(self.path, rules_environment()))
        except (RulesError, TemplateError) as exc:
            self.error = exc.problems if isinstance(exc, RulesError) else [str(exc)]
            if self.current is None:
                log.error("the rules file cannot be read, events wait unplanned: %s", "; ".join(self.error))
            else:
                log.error("rules reload refused, %s stays in force:\n%s", self.current.version, "\n".join(self.error))
            return False
        self.error = None
        previous = self.current
        if previous is not None and rules.version == previous.version:
            return True
        if previous is not None:
            log.info("rules reloaded: %s -> %s", previous.version, rules.version)
        self.current = rules
        for listener in self._listeners:
            listener(rules.loaded.file)
        return True
