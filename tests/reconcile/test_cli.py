"""`systeme-flow reconcile` as an operator runs it, beside the running service: text, progress, --json, --fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from app.store.db import create_engine
from app.store.models import actions
from tests.conftest import SIM_KEY, post_stripe, running, wait_for
from tests.factories import stripe_checkout, write_rules
from tests.reconcile.conftest import purchase

SECRET_VARS = ("MATON_API_KEY", "SYSTEME_API_KEY", "REDIS_URL", "DATABASE_URL", "RULES_FILE", "ADMIN_TOKEN")


def reconcile(*args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    values = {k: v for k, v in os.environ.items() if k not in SECRET_VARS} | env
    return subprocess.run(
        [sys.executable, "-m", "app", "reconcile", *args],
        cwd=cwd,
        env=values,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def count_actions(engine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(actions)) or 0)


async def test_report_progress_json_and_fix_beside_the_running_service(make_settings, sqlite_url, sim, hands, tmp_path):
    settings = make_settings(database_url=sqlite_url)
    env = {
        "DATABASE_URL": sqlite_url,
        "SYSTEME_API_KEY": SIM_KEY,
        "SYSTEME_API_URL": sim.url,
        "RULES_FILE": settings.rules_file,
    }
    engine = create_engine(sqlite_url)
    try:
        with running(settings) as url:
            for email in ("ada@yopmail.com", "bob@yopmail.com"):
                await post_stripe(url, stripe_checkout(email))
            await wait_for(lambda: len(sim.account.memberships) == 2)
            await hands.untag("ada@yopmail.com", "Masterclass buyer")
            writes = len(sim.writes())

            done = reconcile(cwd=tmp_path, **env)
            assert done.returncode == 1, done.stderr  # drift found, nothing fixed
            lines = done.stdout.splitlines()
            assert len(lines) == 2
            assert lines[0].startswith("ada@yopmail.com  we tagged 'Masterclass buyer' (masterclass-purchase, ")
            assert lines[0].endswith("Systeme.io: not tagged  [tag removed by hand]")
            assert lines[1].startswith("2 contacts checked with ") and lines[1].endswith(
                ": 1 drift (1 tag removed by hand)"
            )
            assert done.stderr.splitlines() == ["checked 1/2 contacts", "checked 2/2 contacts"]

            done = reconcile("--json", "--since", "1h", cwd=tmp_path, **env)
            assert done.returncode == 1
            report = json.loads(done.stdout)
            assert set(report) == {
                "since", "rule", "contacts", "checked", "requests", "requests_per_contact", "accounts",
                "drifts", "counts", "in_flight", "unchecked", "errors",
            }  # fmt: skip
            assert (report["contacts"], report["checked"], report["counts"]) == (2, 2, {"removed": 1})
            assert report["accounts"]["default"]["checked"] == 2 and report["requests_per_contact"] >= 3
            (drift,) = report["drifts"]
            assert drift["contact"] == "ada@yopmail.com" and drift["kind"] == "removed"
            assert drift["why"] == "tag removed by hand"
            assert drift["target"] == {"type": "tag", "ref": "Masterclass buyer"}
            assert drift["we_did"]["kind"] == "tag" and drift["we_did"]["rule_id"] == "masterclass-purchase"
            assert drift["systeme_io"] == {"found": [], "text": "not tagged"}
            assert len(sim.writes()) == writes  # the checks read only

            before = await count_actions(engine)
            done = reconcile("--fix", cwd=tmp_path, stdin="n\n", **env)
            assert done.returncode == 1
            assert "Plan 1 actions again for 1 contacts? [y/N]" in done.stderr
            assert done.stdout.splitlines()[-1] == "nothing planned"
            assert await count_actions(engine) == before

            done = reconcile("--fix", "--yes", "--by", "ops", cwd=tmp_path, **env)
            assert done.returncode == 0, done.stderr
            planned = done.stdout.splitlines()[-1].split()
            assert planned[0] == "planned" and planned[2:] == ["pending", "ada@yopmail.com", "tag"]
            await wait_for(lambda: sim.tag_names("ada@yopmail.com") == ["Masterclass buyer"])

            done = reconcile(cwd=tmp_path, **env)
            assert done.returncode == 0
            assert done.stdout.splitlines()[-1].endswith(": no drift")
    finally:
        await engine.dispose()


async def test_an_unknown_account_is_an_error_line_and_a_dry_run_cannot_check(sqlite_url, sim, client, tmp_path):
    engine = create_engine(sqlite_url)
    try:
        await purchase(engine, client, "ada@yopmail.com")
        await purchase(engine, client, "shop@yopmail.com")
        async with engine.begin() as conn:
            await conn.execute(
                actions.update().where(actions.c.contact_email == "shop@yopmail.com").values(account="shop2")
            )
    finally:
        await engine.dispose()
    write_rules(tmp_path)  # its `accounts:` name no 'shop2'
    env = {"DATABASE_URL": sqlite_url, "SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    done = reconcile(cwd=tmp_path, **env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "checked 1/1 contacts",
        "systeme-flow reconcile: error: 1 contact not checked: "
        "account 'shop2' is not configured: add it under `accounts:` in the rules file",
    ]
    assert done.stdout.splitlines()[-1].startswith("1 contact checked with ")

    done = reconcile(cwd=tmp_path, DATABASE_URL=sqlite_url)
    assert done.returncode == 2
    assert done.stderr == "systeme-flow reconcile: needs MATON_API_KEY or SYSTEME_API_KEY to read the account\n"
    done = reconcile("--since", "lately", cwd=tmp_path, **env)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1


async def test_a_refused_key_names_the_setting_and_stdout_does_not_say_no_drift(sqlite_url, sim, client, tmp_path):
    engine = create_engine(sqlite_url)
    try:
        await purchase(engine, client, "ada@yopmail.com")
    finally:
        await engine.dispose()
    write_rules(tmp_path)
    done = reconcile(cwd=tmp_path, DATABASE_URL=sqlite_url, SYSTEME_API_KEY="not-the-key", SYSTEME_API_URL=sim.url)
    assert done.returncode == 2
    assert "check SYSTEME_API_KEY" in done.stderr and "401" in done.stderr
    assert "no drift" not in done.stdout and "the check is incomplete" in done.stdout
