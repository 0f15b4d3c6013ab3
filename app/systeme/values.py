"""What Systeme.io accepts in a contact's values, checked before they are sent (from ../shared/systeme/openapi.json).

A contact field value is at most 255 characters, and `locale` is one of the 28 codes of `ContactInput.locale`
(the reference's own spellings: `jp`, `dk`, `ua`, not ISO 639-1's ja, da, uk). A value that breaks either is
dropped from the request, and said so in the action's note, rather than failing the contact and with it every step.
"""

from __future__ import annotations

import re
from typing import Any

MAX_VALUE = 255
LOCALES = frozenset("en fr es it pt de nl ru jp tr ar zh sv ro cs hu sk dk id pl el sr hi no th sq sl ua".split())
_FIELD_PATH = re.compile(r"^fields\[(\d+)\]")


def screen(fields: dict[str, str], locale: str | None) -> tuple[dict[str, str], str | None, list[str]]:
    """(the fields and locale that may be sent, what was dropped and why)."""
    kept = {slug: value for slug, value in fields.items() if len(value) <= MAX_VALUE}
    dropped = [
        f"field {slug} ({len(value)} characters, over {MAX_VALUE})"
        for slug, value in fields.items()
        if slug not in kept
    ]
    if locale and locale not in LOCALES:
        dropped.append(f"locale {locale[:20]!r} (not a Systeme.io locale code)")
        locale = None
    return kept, locale, dropped


def refused_parts(answer: Any, body: dict[str, Any]) -> tuple[set[str], bool]:
    """From a 422 problem document: the field slugs it names (by `fields[i]` of `body`) and whether it names locale."""
    slugs: set[str] = set()
    locale = False
    sent = body.get("fields") or []
    violations = answer.get("violations") if isinstance(answer, dict) else None
    for violation in violations or []:
        path = str((violation or {}).get("propertyPath", "")) if isinstance(violation, dict) else ""
        if path == "locale":
            locale = True
        elif (match := _FIELD_PATH.match(path)) and int(match.group(1)) < len(sent):
            slugs.add(str(sent[int(match.group(1))].get("slug")))
    return slugs, locale
