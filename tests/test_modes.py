"""Account modes end to end: a dry run, then the simulator, then a live account (a second simulator); no test event
or action ever reaches the live account, and `discard --test-data` removes them."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from app.accounts.modes import DRY_RUN, describe, fingerprint, is_test
from app.accounts.registry import Account
from app.cli.discard import startup_leftover_lines
from app.simulator import Simulator
from app.store.db import create_engine
from app.store.models import actions, api_calls, contacts, events, rule_outcomes
from tests.clitools import cli
from tests.conftest import ADMIN, operator, post_stripe, running, wait_for
from tests.factories import drip_settings, stripe_checkout
from tests.flows import a_week_passes, burst, by_kind, event_actions, settled
from tests.servers import ServerThread

LIVE_KEY = "live-api-key-for-tests"


def live_simulator() -> Simulator:
    live = Simulator(api_key=LIVE_KEY)
    live.seed(
        courses=[{"id": 101, "name": "Masterclass"}, {"id": 102, "name": "Bonus"}],
        communities=[{"id": 7, "name": "Insiders"}],
    )
    return live


async def rows(database_url: str, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[sa.Row]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(sa.select(table).where(*where)))
    finally:
        await engine.dispose()


def test_fingerprint_tells_dry_run_simulator_and_live_apart_and_never_holds_the_key():
    dry = Account("default", "dry-run", "https://api.systeme.io", {})
    sim = Account("default", "direct", "http://127.0.0.1:9000", {"X-API-Key": "k1"})
    live = Account("default", "direct", "https://api.systeme.io", {"X-API-Key": "secret-key-value"})
    other = Account("default", "direct", "https://api.systeme.io", {"X-API-Key": "another-key"})
    maton = Account("shop", "maton", "https://api.maton.ai/systeme", {"Authorization": "Bearer m"}, "conn-1")
    held = Account("shop", "dry-run", "https://api.maton.ai/systeme", {}, "conn-1", "no MATON_API_KEY")
    assert fingerprint(dry) == DRY_RUN
    assert str(fingerprint(sim)).startswith("simulator:default:")
    assert str(fingerprint(live)).startswith("live:default:")
    assert fingerprint(live) != fingerprint(other)
    assert "secret-key-value" not in str(fingerprint(live))
    assert str(fingerprint(maton)).startswith("live:shop:")
    assert fingerprint(held) is None  # held, not moded: it runs once fixed
    assert is_test(fingerprint(sim)) and is_test(DRY_RUN) and not is_test(fingerprint(live))
    assert describe(fingerprint(live)).startswith("live account default (")


async def test_dry_run_then_simulator_then_live_never_reaches_the_live_account(
    make_settings, database_url, sim, tmp_path
):
    # 1. A dry run: the purchase's first steps are skipped, its `after: 7d` step waits.
    dry = drip_settings(make_settings, tmp_path, database_url=database_url, systeme_api_key=None)
    with running(dry) as url:
        dry_event = await post_stripe(url, stripe_checkout("ada@yopmail.com"))
        await settled(url, dry_event)
        dry_steps = by_kind(await event_actions(url, dry_event))
    assert dry_steps["Masterclass buyer"]["status"] == "skipped"
    assert dry_steps["add_to_community"]["status"] == "scheduled"

    # 2. The simulator: its own purchase runs there; the dry run's step, due now, does not.
    trial = drip_settings(make_settings, tmp_path, database_url=database_url)
    with running(trial) as url:
        sim_event = await post_stripe(url, stripe_checkout("bob@yopmail.com"))
        await settled(url, sim_event)
        assert by_kind(await event_actions(url, sim_event))["Masterclass buyer"]["status"] == "succeeded"
        await a_week_passes(database_url)

        async def bob_done() -> bool:
            steps = await event_actions(url, sim_event)
            return all(a["status"] == "succeeded" for a in steps)

        # Bob's delayed steps, due in the simulator's own mode, run there: the sweeps went by the dry run's too.
        await wait_for(bob_done)
        assert by_kind(await event_actions(url, dry_event))["add_to_community"]["status"] == "scheduled"
        sim_steps = by_kind(await event_actions(url, sim_event))
    assert sim.contact("ada@yopmail.com") is None
    assert sim.tag_names("bob@yopmail.com") == ["Masterclass buyer", "Week two"]

    # 3. The live account (a second simulator, its own URL and key).
    live = live_simulator()
    with ServerThread(live.app) as server:
        real = drip_settings(
            make_settings, tmp_path, database_url=database_url, systeme_api_key=LIVE_KEY, systeme_api_url=server.url
        )
        with running(real) as url:
            async with operator(url) as http:
                home = await http.get("/ui")
            assert home.status_code == 200
            assert "Left from other modes" in home.text and "a dry run" in home.text
            assert "<code>systeme-flow discard --test-data</code>" in home.text and "`" not in home.text
            live_event = await post_stripe(url, stripe_checkout("carol@yopmail.com"))
            await settled(url, live_event)
            await a_week_passes(database_url)

            async def carol_done() -> bool:
                steps = by_kind(await event_actions(url, live_event))
                return all(a["status"] == "succeeded" for a in steps.values())

            await wait_for(carol_done)
            # run-now and retry of test work answer 409, saying why.
            async with operator(url) as http:
                refused = await http.post(f"/v1/actions/{dry_steps['add_to_community']['id']}/run-now")
                retried = await http.post(f"/v1/actions/{dry_steps['Masterclass buyer']['id']}/retry")
            assert refused.status_code == 409, refused.text
            assert "planned under a dry run" in refused.json()["error"], refused.json()
            assert retried.status_code == 409 and "never runs under another mode" in retried.json()["error"]
            async with operator(url) as http:  # the dashboard's button (a Bearer caller needs no CSRF token)
                button = await http.post(f"/ui/actions/{dry_steps['add_to_community']['id']}/run-now")
            assert button.status_code == 409 and "planned under a dry run" in button.text
            assert by_kind(await event_actions(url, dry_event))["add_to_community"]["status"] == "scheduled"

        # Nothing of the dry run or the simulator reached the live account: only carol.
        assert {c["email"] for c in live.account.contacts.values()} == {"carol@yopmail.com"}
        written = {c["path"] for c in live.account.calls if c["method"] != "GET"}
        assert written and all("ada" not in p and "bob" not in p for p in written)
        assert live.account.contact_by_email("ada@yopmail.com") is None
        # The mirror learned in the simulator was forgotten when the account changed mode.
        assert not [r for r in await rows(database_url, contacts) if r.email == "bob@yopmail.com"]

        # `discard --test-data` lists what is left, asks (no answer: nothing removed), then removes it with --yes.
        env = {
            "DATABASE_URL": database_url,
            "SYSTEME_API_KEY": LIVE_KEY,
            "SYSTEME_API_URL": server.url,
            "RULES_FILE": real.rules_file,
            "ADMIN_TOKEN": ADMIN,
        }
        # `serve`'s banner lists them too (read before it starts, like `serve` does).
        banner = "\n".join(await asyncio.to_thread(startup_leftover_lines, real))
        assert "left over: work stored under other modes" in banner
        assert "a dry run: 1 event, 4 actions (2 waiting, never run here)" in banner
        assert "the simulator (account default" in banner and "discard --test-data" in banner
        # The lists say which lines are another mode's: beside the live account's, they would read as real.
        listed = cli("events", cwd=tmp_path, **env).stdout.splitlines()
        assert "arrived under" not in [line for line in listed if "carol@yopmail.com" in line][0]
        assert [line for line in listed if "ada@yopmail.com" in line][0].endswith("  (arrived under a dry run)")
        steps = cli("actions", "--status", "scheduled", cwd=tmp_path, **env).stdout
        assert "(never runs here: planned under a dry run)" in steps
        story = cli("contact", "ada@yopmail.com", cwd=tmp_path, **env).stdout.splitlines()
        assert [line for line in story if "stripe/" in line][0].endswith("  (arrived under a dry run)")
        assert any(line.endswith("(never runs here: planned under a dry run)") for line in story)
        by_cli = cli("run-now", dry_steps["add_to_community"]["id"], cwd=tmp_path, **env)
        assert by_cli.returncode == 2 and "planned under a dry run" in by_cli.stderr, by_cli.stderr
        # What the simulator did is not drift in the live account: reconcile reads only the current mode's work.
        checked = cli("reconcile", "--json", cwd=tmp_path, **env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "bob@yopmail.com" not in checked.stdout and "ada@yopmail.com" not in checked.stdout
        asked = cli("discard", "--test-data", cwd=tmp_path, **env)
        assert asked.returncode == 0, asked.stderr
        assert "a dry run: 1 event, " in asked.stdout and "nothing removed" in asked.stdout
        assert "remove these events and actions for good? [y/N]" in asked.stderr
        gone = cli("discard", "--test-data", "--yes", cwd=tmp_path, **env)
        assert gone.returncode == 0, gone.stderr
        assert "removed 1 event and" in gone.stdout and "of a dry run" in gone.stdout
        assert "of the simulator (account default" in gone.stdout
        assert "discarded by cli" in gone.stderr  # recorded in the log
        again = cli("discard", "--test-data", "--yes", cwd=tmp_path, **env)
        assert again.stdout.startswith("nothing to discard")

    left = {r.id for r in await rows(database_url, events)}
    assert left == {live_event}
    assert {r.event_id for r in await rows(database_url, actions)} == {live_event}
    assert {r.event_id for r in await rows(database_url, rule_outcomes)} == {live_event}
    sim_ids = {a["id"] for a in sim_steps.values()}
    assert not [r for r in await rows(database_url, api_calls) if r.action_id in sim_ids]


async def test_a_replay_plans_a_dry_run_event_under_the_account_now_configured(
    make_settings, database_url, sim, tmp_path
):
    dry = drip_settings(make_settings, tmp_path, database_url=database_url, systeme_api_key=None)
    with running(dry) as url:
        event_id = await post_stripe(url, stripe_checkout("dana@yopmail.com"))
        await settled(url, event_id)
    with running(drip_settings(make_settings, tmp_path, database_url=database_url)) as url:
        async with operator(url) as http:
            answer = await http.post(f"/v1/events/{event_id}/replay")
        assert answer.status_code == 200, answer.text
        assert answer.json()["planned_under"].startswith("the simulator (account default")

        async def tagged() -> bool:
            return sim.tag_names("dana@yopmail.com") == ["Masterclass buyer"]

        await wait_for(tagged)
        await a_week_passes(database_url)

        async def replayed_done() -> bool:
            return sum(a["status"] == "succeeded" for a in await event_actions(url, event_id)) == 4

        await wait_for(replayed_done)
        steps = await event_actions(url, event_id)
    # The replay's own delayed steps ran in the simulator; the dry run's stayed where they were.
    old = [a for a in steps if a["status"] == "scheduled"]
    assert sorted(a["kind"] for a in old) == ["add_to_community", "tag"]
    assert sim.tag_names("dana@yopmail.com") == ["Masterclass buyer", "Week two"]
    mine = await rows(database_url, events, events.c.id == event_id)
    assert str(mine[0].mode).startswith("simulator:default:")


async def test_arq_workers_never_run_a_dry_run_step_once_a_key_is_set(
    make_settings, postgres_url, clean_redis, sim, tmp_path
):
    dry = drip_settings(make_settings, tmp_path, database_url=postgres_url, systeme_api_key=None)
    with running(dry) as url:
        dry_event = await post_stripe(url, stripe_checkout("erin@yopmail.com"))
        await settled(url, dry_event)
    keyed = drip_settings(make_settings, tmp_path, database_url=postgres_url, redis_url=clean_redis)
    with running(keyed) as url:
        sim_event = await post_stripe(url, stripe_checkout("finn@yopmail.com"))
        burst(postgres_url, clean_redis, sim.url)
        await a_week_passes(postgres_url)
        burst(postgres_url, clean_redis, sim.url)  # its sweep finds every step due: only the simulator's run
        assert all(a["status"] == "succeeded" for a in await event_actions(url, sim_event))
        assert by_kind(await event_actions(url, dry_event))["add_to_community"]["status"] == "scheduled"
    assert sim.contact("erin@yopmail.com") is None
    assert sim.tag_names("finn@yopmail.com") == ["Masterclass buyer", "Week two"]
