"""`systeme-flow` run as a person runs it: a child process with only the environment it is given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """No variable of this process leaks in (an outer MATON_API_KEY would change what is tested)."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


SECRET_VARS = ("MATON_API_KEY", "SYSTEME_API_KEY", "REDIS_URL", "DATABASE_URL", "RULES_FILE", "ADMIN_TOKEN")


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env.update(values)
    return env


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=60
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
