"""The rules in force: one load policy for the API, the planner and the workers."""

from __future__ import annotations

import os

from app.rules.current import RulesInForce
from tests.factories import RULES, write_rules


def test_a_refused_file_keeps_the_rules_in_force_and_is_not_read_again_until_it_changes(tmp_path, caplog):
    path = write_rules(tmp_path)
    rules = RulesInForce(path)
    changes: list[object] = []
    rules.on_change(changes.append)
    assert rules.load() and rules.current is not None and rules.error is None
    first = rules.current.version
    assert len(changes) == 1
    path.write_text("version: 2\n")
    assert not rules.reload_if_changed()
    assert rules.current.version == first and rules.error
    assert any("unsupported version" in problem for problem in rules.error)
    refusals = [r for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refusals) == 1
    assert not rules.reload_if_changed()  # the same broken file: not parsed (nor logged) again
    assert [r for r in caplog.records if "reload refused" in r.getMessage()] == refusals
    path.write_text(RULES.replace("tag: Newsletter", "tag: Newsletters"))
    os.utime(path, ns=(1, 1))  # a different stamp, whatever the clock's resolution
    assert rules.reload_if_changed()
    assert rules.current.version != first and rules.error is None and len(changes) == 2


def test_an_unreadable_first_load_leaves_no_rules(tmp_path):
    rules = RulesInForce(tmp_path / "missing.yaml")
    assert not rules.load()
    assert rules.current is None and rules.file is None and rules.error and "cannot read" in rules.error[0]
