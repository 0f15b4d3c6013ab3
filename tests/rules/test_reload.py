"""Hot reload: a valid change takes over, an invalid one is refused while the old rules keep serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.clitools import cli_env, free_port
from tests.conftest import operator, planned, running, wait_for
from tests.factories import RULES, stripe_checkout, stripe_headers, write_rules

EXTRA_RULE = """
  - id: every-checkout
    on: stripe/checkout.*
    contact: { email: "{{ event.data.object.customer_details.email }}" }
    actions: [ { tag: Checked out } ]
"""


async def version(url: str) -> dict:
    async with httpx.AsyncClient(base_url=url) as http:
        return (await http.get("/readyz")).json()


async def test_file_change_reloads_and_bad_change_is_refused(make_settings, sqlite_url, tmp_path, sim):
    settings = make_settings(database_url=sqlite_url)
    with running(settings) as url:
        first = (await version(url))["checks"]["rules"]["version"]
        write_rules(tmp_path, RULES + EXTRA_RULE)

        async def reloaded() -> bool:
            return (await version(url))["checks"]["rules"]["version"] != first

        await wait_for(reloaded, timeout=10)
        body = json.dumps(stripe_checkout("r@yopmail.com")).encode()
        async with httpx.AsyncClient(base_url=url) as http:
            event_id = (await http.post("/hooks/stripe", content=body, headers=stripe_headers(body))).json()["event_id"]
        event = await planned(url, event_id)
        second = event["rules_version"]
        assert second != first
        assert [r["rule_id"] for r in event["rules"]] == ["masterclass-purchase", "every-checkout"]

        write_rules(tmp_path, RULES + EXTRA_RULE + "  - { id: broken, on: nowhere, actions: [] }\n")
        async with operator(url) as http:
            refused = await http.post("/v1/rules/reload")
        assert refused.status_code == 400
        assert refused.json()["version"] == second
        assert any("`on: nowhere` names an unknown source" in line for line in refused.json()["error"])
        ready = await version(url)
        assert ready["ready"] is True
        assert ready["checks"]["rules"]["version"] == second and ready["checks"]["rules"]["error"]

        write_rules(tmp_path, RULES)
        async with operator(url) as http:
            fixed = await http.post("/v1/rules/reload")
        assert fixed.status_code == 200 and fixed.json()["version"] == first
        assert (await version(url))["checks"]["rules"]["error"] is None


def test_sighup_reloads_the_rules(tmp_path):
    write_rules(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(LOG_FORMAT="json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                first = httpx.get(url).json()["checks"]["rules"]["version"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        # Same size and a restored mtime: only the signal can notice this change, not the file watcher.
        path = tmp_path / "rules.yaml"
        stat = path.stat()
        path.write_text(RULES.replace("tag: Newsletter", "tag: NewsletteX"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(2.5)
        assert httpx.get(url).json()["checks"]["rules"]["version"] == first
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while httpx.get(url).json()["checks"]["rules"]["version"] == first:
            assert time.monotonic() < deadline, "SIGHUP did not reload the rules"
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=20)
