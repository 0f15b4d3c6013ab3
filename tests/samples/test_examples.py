"""The example rules file and the samples agree: each sample is what one example rule is written for."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from app.rules.engine import RuleSet
from app.rules.loader import load_rules
from app.samples import find_sample, samples_for
from app.samples.signing import sample_body
from app.sources import parse_delivery
from app.webhooks.body import build_delivery
from tests.clitools import cli
from tests.conftest import running, wait_for
from tests.factories import EXAMPLE_ENV

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = RuleSet(load_rules(ROOT / "rules.yaml", EXAMPLE_ENV))
WRITTEN_FOR = {
    ("stripe", "checkout"): "masterclass-purchase",
    ("stripe", "refund"): "refund-revokes-access",
    ("stripe", "subscription-deleted"): "subscription-ended",
    ("partner", "user-created"): "partner-signup",
    ("signup", "signup"): "newsletter",
    ("systeme", "sale"): "vip-sale",
}


async def planned(source: str, sample_name: str):
    config = EXAMPLE.sources[source]
    sample = find_sample(config.type, sample_name)
    headers = {"content-type": sample.content_type, **sample.headers}
    delivery = await build_delivery(config.type, headers, sample_body(config, sample), {})
    event = parse_delivery(config, delivery, time.time(), verify=False)
    return EXAMPLE.plan(source=source, event_type=event.type, payload=event.payload)


@pytest.mark.parametrize(("source", "sample"), list(WRITTEN_FOR))
async def test_each_sample_matches_the_example_rule_written_for_it(source, sample):
    outcomes = await planned(source, sample)
    assert [o.rule_id for o in outcomes if o.decision == "matched"] == [WRITTEN_FOR[(source, sample)]]


def test_the_systeme_samples_follow_the_captured_delivery():
    # A real one-off sale on an order form says these (issue 18); rules written from samples must match real sales.
    (sale,) = [s for s in samples_for("systeme") if s.name == "sale"]
    assert (sale.payload["pricePlan"]["type"], sale.payload["funnelStep"]["type"]) == ("one_shot", "offer-form")
    assert isinstance(sale.payload["customer"]["fields"], dict)
    tag_added = find_sample("systeme", "tag-added")
    assert tag_added.headers["X-Webhook-Event"] == "CONTACT_TAG_ADDED"
    assert isinstance(tag_added.payload["contact"]["fields"], list) and tag_added.payload["tag"]["name"] == "VIP"


def test_every_enabled_example_rule_has_a_sample():
    assert {r.id for r in EXAMPLE.rules if r.enabled} == set(WRITTEN_FOR.values())


async def test_full_names_become_first_name_and_surname():
    for source, sample in (("signup", "signup"), ("stripe", "checkout")):
        (outcome, *_) = [o for o in await planned(source, sample) if o.decision == "matched"]
        fields = outcome.actions[0].contact["fields"]
        assert (fields["first_name"], fields["surname"]) == ("Ada", "Lovelace")


async def test_the_example_cancellation_is_safe_contact_and_approval():
    (outcome,) = await planned("stripe", "subscription-deleted")
    (action,) = outcome.actions
    assert action.kind == "cancel_subscription" and action.approval == "required"
    assert action.contact is not None and action.contact["email"] == "ada@yopmail.com"
    assert action.params["subscription"] == "4242"


def test_explain_a_sample_of_the_example_rules(tmp_path):
    done = cli("explain", "--rules", str(ROOT / "rules.yaml"), "--source", "signup", "--sample", "signup",
               cwd=tmp_path, **EXAMPLE_ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "MATCH newsletter: matched" in done.stdout
    assert '"first_name": "Ada", "surname": "Lovelace"' in done.stdout
    # With --verify a sample is signed with the source's secret from the rules (and its ${VAR}) first.
    done = cli("explain", "--rules", str(ROOT / "rules.yaml"), "--source", "stripe", "--sample", "refund", "--verify",
               cwd=tmp_path, **EXAMPLE_ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "signature verified" in done.stdout and "MATCH refund-revokes-access" in done.stdout


async def test_the_readme_trial_runs_as_written(make_settings, sqlite_url, sim, tmp_path, monkeypatch):
    """The README's simulator recipe, minus `make`: samples sent, the contact set up, a cancellation approved."""
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)  # the service in this process reads the example's ${VAR}s
    env = {**EXAMPLE_ENV, "DATABASE_URL": sqlite_url, "RULES_FILE": str(ROOT / "rules.yaml")}
    with running(make_settings(database_url=sqlite_url, rules_file=str(ROOT / "rules.yaml"))) as url:
        for source, sample in (("signup", "signup"), ("stripe", "checkout")):
            done = cli("send", "--source", source, sample, "--url", url, cwd=tmp_path, **env)
            assert done.returncode == 0, done.stdout + done.stderr
        await wait_for(lambda: sim.tag_names("ada@yopmail.com") == ["Masterclass buyer", "Newsletter"])
        (later,) = cli("actions", "--status", "scheduled", cwd=tmp_path, **env).stdout.splitlines()
        assert 'masterclass-purchase: tag {"name": "Masterclass week 2"} ada@yopmail.com  due ' in later
        ada = sim.contact("ada@yopmail.com")
        assert ada is not None
        fields = {f["slug"]: f["value"] for f in ada["fields"]}
        assert (fields["first_name"], fields["surname"]) == ("Ada", "Lovelace")
        seeded = httpx.post(
            f"{sim.url}/_sim/seed", json={"subscriptions": [{"id": 4242, "contactEmail": "ada@yopmail.com"}]}
        )
        assert seeded.status_code == 200
        done = cli("send", "--source", "stripe", "subscription-deleted", "--url", url, cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        waiting = cli("actions", "--status", "awaiting_approval", cwd=tmp_path, **env).stdout.splitlines()
        assert len(waiting) == 1 and "subscription-ended: cancel_subscription" in waiting[0]
        done = cli("approve", waiting[0].split()[0], cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        await wait_for(lambda: sim.account.subscriptions[4242]["status"] == "cancelled")
    assert sim.account.subscriptions[4242]["contactId"] == ada["id"]
