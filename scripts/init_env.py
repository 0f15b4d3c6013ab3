"""Create .env from .env.example with fresh random secrets (run by `make run` when .env is missing).

Plain Python on purpose: `make` may run it before the virtualenv has the project's dependencies."""

import base64
import os
import re
import secrets
import sys
from pathlib import Path

# A variable named like a secret never keeps the example's value: anyone who read .env.example would know it.
_SECRET_NAME = re.compile(r"(SECRET|TOKEN|KEY|PASSWORD)$")
_PLACEHOLDER = re.compile(r"replace[-_]?me|change[-_]?me|cmVwbGFjZV9tZQ", re.IGNORECASE)


def fresh(value: str) -> str:
    if value.startswith("whsec_"):
        return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return secrets.token_urlsafe(24)


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    if target.exists():
        return
    lines = []
    for line in Path(".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if (
            sep
            and not line.lstrip().startswith("#")
            and (_SECRET_NAME.search(key.strip()) or _PLACEHOLDER.search(value))
        ):
            line = f"{key}={fresh(value)}"
        lines.append(line)
    # Created private (0600) and only if absent: the secrets are never readable by others, not even for a moment.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    sys.stderr.write(f"wrote {target} (readable by you only) with fresh secrets for the example rules\n")


if __name__ == "__main__":
    main()
