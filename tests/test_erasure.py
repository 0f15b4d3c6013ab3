"""`forget EMAIL --in-systeme`: the contact erased in Systeme.io and recorded, then the person forgotten here."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from app.accounts.registry import AccountClients
from app.simulator.state import Fault
from app.store.actions import claim_run, release
from app.store.db import create_engine
from app.store.erasures import OPERATOR_SOURCE
from app.store.models import actions, api_calls, contacts, events, rule_outcomes, utcnow
from app.store.retention import purge
from tests.clitools import run_cli
from tests.conftest import SIM_KEY, post_stripe, running
from tests.factories import stripe_checkout
from tests.flows import plan_and_store, row, run, settled


def _env(database_url: str, sim_url: str, rules: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "RULES_FILE": rules, "SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim_url}


async def _rows_about(database_url: str) -> dict[str, list[dict]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            erasures = sa.select(events.c.id).where(events.c.source == OPERATOR_SOURCE)
            found = {
                "events": (await conn.execute(sa.select(events).where(events.c.id.in_(erasures)))).mappings().all(),
                "outcomes": (await conn.execute(sa.select(rule_outcomes).where(rule_outcomes.c.event_id.in_(erasures))))
                .mappings()
                .all(),
                "actions": (await conn.execute(sa.select(actions).where(actions.c.event_id.in_(erasures))))
                .mappings()
                .all(),
                "mirror": (await conn.execute(sa.select(contacts))).mappings().all(),
            }
            found["calls"] = (
                (
                    await conn.execute(
                        sa.select(api_calls)
                        .where(api_calls.c.action_id.in_([a["id"] for a in found["actions"]]))
                        .order_by(api_calls.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return {key: [dict(r) for r in rows] for key, rows in found.items()}
    finally:
        await engine.dispose()


async def test_forget_in_systeme_erases_the_contact_records_it_and_forgets_the_person(
    make_settings, database_url, sim, tmp_path
):
    settings = make_settings(database_url=database_url)
    with running(settings) as url:
        mine = await post_stripe(url, stripe_checkout("Private.Person@yopmail.com"))
        await settled(url, mine)
    contact_id = sim.contact("private.person@yopmail.com")["id"]
    env = _env(database_url, sim.url, settings.rules_file)

    done = run_cli("forget", "Private.Person@yopmail.com", "--in-systeme", "--by", "dpo", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    erased, forgotten = done.stdout.splitlines()
    assert erased.startswith(f"erased in Systeme.io (account default): contact {contact_id} deleted in Systeme.io")
    assert forgotten == "forgotten: 2 events, 4 actions"  # the purchase's 3 steps, and the erasure itself
    assert sim.contact("private.person@yopmail.com") is None

    rows = await _rows_about(database_url)
    assert "private.person" not in json.dumps(rows, default=str).lower()
    assert rows["mirror"] == []
    (event,) = rows["events"]
    assert event["payload"] == {"erasure": "forget --in-systeme", "requested_by": "dpo", "account": "default"}
    (action,) = rows["actions"]
    assert (action["kind"], action["status"], action["decided_by"]) == ("delete_contact", "succeeded", "dpo")
    assert action["outcome"] == f"contact {contact_id} deleted in Systeme.io" and action["contact_email"] is None
    assert action["note"] == "asked by dpo (forget --in-systeme); the person was then forgotten here"
    assert [(c["method"], c["status_code"], c["path"]) for c in rows["calls"]] == [
        ("GET", 200, "(forgotten)"),
        ("DELETE", 204, "(forgotten)"),
    ]
    # Retention keeps the proof of the erasure: it names nobody.
    engine = create_engine(database_url)
    try:
        await purge(engine, before=utcnow(), now=utcnow())
    finally:
        await engine.dispose()
    assert len((await _rows_about(database_url))["actions"]) == 1

    again = run_cli("forget", "private.person@yopmail.com", "--in-systeme", "--json", cwd=tmp_path, **env)
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert answer["erased"]["outcome"] == "not found in Systeme.io: nothing to erase"
    assert answer["forgotten"] == {"events": 1, "actions": 1}


async def test_when_systeme_io_does_not_erase_nothing_is_forgotten(make_settings, sqlite_url, sim, tmp_path):
    settings = make_settings(database_url=sqlite_url)
    with running(settings) as url:
        mine = await post_stripe(url, stripe_checkout("kept@yopmail.com"))
        await settled(url, mine)
    sim.account.faults.append(Fault(503, 1000, "/api/contacts/", "DELETE"))
    env = _env(sqlite_url, sim.url, settings.rules_file)
    done = run_cli("forget", "kept@yopmail.com", "--in-systeme", cwd=tmp_path, **env)
    assert done.returncode != 0 and done.stdout == ""
    assert "the contact was not erased in Systeme.io (account default)" in done.stderr
    assert "nothing was forgotten here, run the command again" in done.stderr
    assert sim.contact("kept@yopmail.com") is not None
    rows = await _rows_about(sqlite_url)
    (action,) = rows["actions"]
    assert action["status"] == "cancelled" and "run forget --in-systeme again" in action["note"]
    assert action["contact_email"] == "kept@yopmail.com"  # not forgotten: the next run finds the person
    assert [m["email"] for m in rows["mirror"]] == ["kept@yopmail.com"]

    dry = run_cli("forget", "kept@yopmail.com", "--in-systeme", cwd=tmp_path, DATABASE_URL=sqlite_url)
    assert dry.returncode != 0 and "nothing can be erased in Systeme.io" in dry.stderr
    alone = run_cli("forget", "kept@yopmail.com", "--account", "shop", cwd=tmp_path, DATABASE_URL=sqlite_url)
    assert alone.returncode != 0 and "--account goes with --in-systeme" in alone.stderr
    unknown = run_cli("forget", "kept@yopmail.com", "--in-systeme", "--account", "shop", cwd=tmp_path, **env)
    assert unknown.returncode != 0 and "account 'shop' is not configured" in unknown.stderr
    assert len((await _rows_about(sqlite_url))["actions"]) == 1


async def test_the_erasure_waits_for_the_persons_running_steps_and_cancels_their_waiting_ones(
    make_settings, database_url, sim, tmp_path
):
    settings = make_settings(database_url=database_url)
    engine = create_engine(database_url)
    try:
        steps = await plan_and_store(
            engine, stripe_checkout("racing@yopmail.com"), event_type="checkout.session.completed"
        )
        # A worker holds the person's run: it could create the contact again after the erasure.
        now = utcnow()
        taken = await claim_run(
            engine,
            steps[0],
            token="a-worker",
            now=now,
            lease=timedelta(minutes=5),
            ordering_wait=timedelta(0),
            max_attempts=3,
        )
        assert [a.id for a in taken] == steps
        env = _env(database_url, sim.url, settings.rules_file) | {"ACTION_LEASE_SECONDS": "1"}
        busy = run_cli("forget", "racing@yopmail.com", "--in-systeme", cwd=tmp_path, **env)
        assert busy.returncode == 2 and busy.stdout == ""
        assert "still running" in busy.stderr and "run the command again" in busy.stderr
        # Nothing erased, nothing forgotten: the run still holds its steps, which still name the person.
        assert (await _rows_about(database_url))["actions"] == []
        assert {((r := await row(engine, step)).status, r.contact_email) for step in steps} == {
            ("running", "racing@yopmail.com")
        }

        # The worker gives the run back unfinished: its steps wait again, and the erasure cancels them first.
        await release(engine, "a-worker", now=utcnow(), next_attempt_at=None)
        done = run_cli("forget", "racing@yopmail.com", "--in-systeme", cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        assert {(await row(engine, step)).status for step in steps} == {"cancelled"}
        clients = AccountClients(settings, None)
        try:
            for step in steps:
                assert (await run(engine, clients, step)).status == "not_claimed"
        finally:
            await clients.aclose()
        assert sim.contact("racing@yopmail.com") is None
        assert "racing" not in json.dumps(await _rows_about(database_url), default=str).lower()
    finally:
        await engine.dispose()
