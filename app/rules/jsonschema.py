"""A JSON Schema of the rules file as people write it (`- tag: NAME`), for editors and CI."""

from __future__ import annotations

from typing import Any

from app.rules.schema import ACTION_MODELS, NO_PARAMS, SHORTHAND, ContactSpec, SourceConfig

SCHEMA_ID = "https://github.com/systeme-flow/systeme-flow/rules.schema.json"
# What `after_seconds` reads (parse_duration: any case, spaces around); the one-year bound is left to `check`.
AFTER = {
    "type": "string",
    "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*[smhdwSMHDW]\\s*$",
    "description": "run this step this long after the event's time: 30s, 10m, 12h, 7d (at most 365d)",
}
APPROVAL = {"enum": ["auto", "required"]}


def _params(kind: str) -> dict[str, Any]:
    schema = ACTION_MODELS[kind].model_json_schema()
    schema["properties"].pop("kind", None)
    schema["properties"]["after"] = AFTER
    schema["required"] = [r for r in schema.get("required", []) if r != "kind"]
    schema.pop("title", None)
    if kind in NO_PARAMS:
        return {"anyOf": [{"type": "null", "description": "no parameters"}, schema]}
    if kind in SHORTHAND:
        short = {"type": ["string", "integer"], "description": f"short for {{{SHORTHAND[kind]}: ...}}"}
        return {"anyOf": [short, schema]}
    return schema


def rules_schema() -> dict[str, Any]:
    # `after` and `approval` may also sit beside the action's name.
    actions = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": [kind],
            "properties": {kind: _params(kind), "after": AFTER, "approval": APPROVAL},
        }
        for kind in ACTION_MODELS
    ]
    one_or_many = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    rule = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "on", "actions"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
            "description": {"type": "string"},
            "enabled": {"type": "boolean", "default": True},
            "on": {**one_or_many, "description": "source/type, a list of them, or a bare source; * wildcards"},
            "if": {"type": "string", "description": "a Jinja2 expression over `event`"},
            "contact": ContactSpec.model_json_schema(),
            "unless_tagged": {"type": "string"},
            "only_if_tagged": {"type": "string"},
            "approval": APPROVAL,
            "priority": {
                "enum": ["high", "normal", "low"],
                "description": "who goes first under a backlog; default high if it enrolls or adds to a community",
            },
            "actions": {"type": "array", "minItems": 1, "items": {"oneOf": actions}},
        },
    }
    source = SourceConfig.model_json_schema()
    source["properties"]["secret"] = {**one_or_many, "description": "one secret, or several while rotating"}
    # Nested models (`payment:`) are referenced from the root, where their definitions must then be.
    definitions = source.pop("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "systeme-flow rules",
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "sources"],
        "properties": {
            "version": {"const": 1},
            "sources": {"type": "object", "minProperties": 1, "additionalProperties": source},
            "rules": {"type": "array", "items": rule},
        },
        "$defs": definitions,
    }
