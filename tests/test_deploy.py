"""The deployment files keep the promises docs/deployment.md makes (they are run for real by hand: see that page)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).parent.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(ROOT / "docker-compose.yml")
    return loaded


def test_env_example_has_no_trailing_comments():
    # `docker run --env-file` keeps everything after `=`, a comment included, and so would a user who uncomments.
    for number, line in enumerate((ROOT / ".env.example").read_text().splitlines(), 1):
        setting = re.fullmatch(r"#?\s*([A-Z_]+)=(.*)", line)
        if setting:
            assert "#" not in setting[2] and setting[2] == setting[2].strip(), f".env.example:{number}: {line}"


def test_api_and_worker_run_one_image_built_once():
    services = compose()["services"]
    assert services["api"]["image"] == services["worker"]["image"] == "systeme-flow"
    assert [name for name, service in services.items() if "build" in service] == ["api"]


def test_the_rules_file_sits_in_a_mounted_folder():
    for name in ("api", "worker"):
        service = compose()["services"][name]
        folder = str(PurePosixPath(service["environment"]["RULES_FILE"]).parent)
        targets = [volume.split(":")[1] for volume in service["volumes"]]
        assert folder in targets, f"{name}: RULES_FILE's folder {folder} is not a mount ({targets})"


def test_each_role_checks_its_own_health():
    services = compose()["services"]
    for role in ("api", "worker"):
        assert services[role]["healthcheck"]["test"] == ["CMD", "python", "-m", "app.health", role]
        assert "stop_grace_period" in services[role]
