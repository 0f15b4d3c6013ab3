"""The published JSON Schema: up to date, and it accepts the example file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
from ruamel.yaml import YAML

from app.rules.jsonschema import rules_schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_is_current():
    assert json.loads((ROOT / "rules.schema.json").read_text()) == rules_schema()


def test_schema_command_prints_it():
    done = subprocess.run([sys.executable, "-m", "app", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == rules_schema()


def test_example_rules_validate_and_reference_the_schema():
    text = (ROOT / "rules.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=./rules.schema.json\n")
    document = json.loads(json.dumps(YAML(typ="safe").load(text)))
    jsonschema.validate(document, rules_schema())


def test_schema_rejects_an_unknown_action():
    bad = {
        "version": 1,
        "sources": {"s": {"type": "stripe", "secret": "x"}},
        "rules": [{"id": "a", "on": "s", "actions": [{"tagg": "X"}]}],
    }
    validator = jsonschema.Draft202012Validator(rules_schema())
    assert list(validator.iter_errors(bad))
