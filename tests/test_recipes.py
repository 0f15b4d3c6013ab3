"""The `init` recipes: each loads like the example file, and its rules do the expected thing with the
provider's own sample payload; `systeme-flow init` writes them, fills `.env` and checks the result."""

from __future__ import annotations

import fnmatch
import json
import re
import time
import tomllib
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jsonschema
import pytest
from dotenv import dotenv_values
from ruamel.yaml import YAML

from app.cli.send import prepare
from app.config import Settings, is_placeholder
from app.recipes import RECIPES
from app.rules.engine import RuleOutcome, RuleSet
from app.rules.jsonschema import rules_schema
from app.rules.loader import parse_rules
from app.sources import parse_delivery
from app.webhooks.body import build_delivery
from tests.clitools import cli
from tests.conftest import operator, running, wait_for
from tests.factories import stripe_checkout, stripe_refund
from tests.provider_payloads import SELLER
from tests.shop_payloads import calendly_invitee, shopify_order

ROOT = Path(__file__).resolve().parents[1]
ENV = {v.name: f"value-of-{v.name.lower()}" for r in RECIPES.values() for v in r.variables}


def ruleset(name: str) -> RuleSet:
    return RuleSet(parse_rules(RECIPES[name].text(), path=f"{name}.yaml", env=ENV))


async def run(name: str, body: bytes, headers: dict[str, str]) -> dict[str, RuleOutcome]:
    """The event as its source would read it (signature not checked), through every rule of the recipe."""
    rules = ruleset(name)
    source = RECIPES[name].source
    delivery = await build_delivery(rules.sources[source].type, headers, body, {})
    event = parse_delivery(rules.sources[source], delivery, time.time(), verify=False)
    return {o.rule_id: o for o in rules.plan(source=source, event_type=event.type, payload=event.payload)}


def actions(outcome: RuleOutcome) -> list[tuple[str, dict]]:
    return [(a.kind, a.params) for a in outcome.actions]


def contact(outcome: RuleOutcome) -> dict:
    planned = outcome.actions[0].contact
    assert planned is not None
    return planned


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRANT = [("tag", {"name": "Masterclass buyer"}), ("enroll", {"course": "Masterclass", "access": "full_access"})]
REVOKE = [("untag", {"name": "Masterclass buyer"}), ("unenroll", {"course": "Masterclass"})]


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_loads_validates_and_declares_its_variables(name):
    text = RECIPES[name].text()
    loaded = parse_rules(text, path=f"{name}.yaml", env=ENV)
    assert loaded.file.rules and not loaded.warnings
    document = json.dumps(YAML(typ="safe").load(text))
    jsonschema.validate(json.loads(document), rules_schema())
    # Every `${VAR}` the file uses (comments aside) is one `init` fills in or explains.
    assert set(re.findall(r"\$\{([A-Z_]+)\}", document)) == {v.name for v in RECIPES[name].variables}
    assert RECIPES[name].source in loaded.file.sources


def test_recipes_are_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["app"]
    shipped = sorted(p.name for p in (ROOT / "app" / "recipes").glob("*.yaml"))
    assert shipped == sorted(f"{name}.yaml" for name in RECIPES)
    assert all(any(fnmatch.fnmatch(f"recipes/{f}", p) for p in patterns) for f in shipped)


async def test_stripe_course_grants_on_payment_and_revokes_on_refund():
    paid = await run("stripe-course", json.dumps(stripe_checkout("ada@yopmail.com")).encode(), JSON)
    outcome = paid["course-purchase"]
    assert (outcome.decision, outcome.contact_email) == ("matched", "ada@yopmail.com")
    assert contact(outcome)["fields"] == {"first_name": "Ada"}
    assert actions(outcome) == [*GRANT, ("add_to_community", {"community": "Insiders"})]
    refund = (await run("stripe-course", json.dumps(stripe_refund()).encode(), JSON))["refund-revokes-access"]
    assert actions(refund) == [*REVOKE, ("remove_from_community", {"community": "Insiders"})]
    other = stripe_checkout()
    other["data"]["object"]["metadata"] = {"product": "ebook"}
    assert (await run("stripe-course", json.dumps(other).encode(), JSON))["course-purchase"].decision == "not_matched"


async def test_gumroad_sale_and_refund():
    sale = {"seller_id": SELLER, "permalink": "masterclass", "email": " Buyer@Yopmail.com", "sale_id": "S1=="}
    outcome = (await run("gumroad", urlencode(sale).encode(), FORM))["gumroad-sale"]
    assert (outcome.decision, outcome.contact_email, actions(outcome)) == ("matched", "buyer@yopmail.com", GRANT)
    refund = await run("gumroad", urlencode({**sale, "resource_name": "refund"}).encode(), FORM)
    assert actions(refund["gumroad-refund"]) == REVOKE


async def test_shopify_order_paid_then_refunded():
    order = shopify_order("jon@yopmail.com")
    paid = await run("shopify", json.dumps(order).encode(), {**JSON, "X-Shopify-Topic": "orders/paid"})
    outcome = paid["shopify-order-paid"]
    assert (outcome.decision, outcome.contact_email, actions(outcome)) == ("matched", "jon@yopmail.com", GRANT)
    assert contact(outcome)["fields"] == {"first_name": "John", "surname": "Smith"}
    refunded = json.dumps({**order, "financial_status": "refunded"}).encode()
    updated = await run("shopify", refunded, {**JSON, "X-Shopify-Topic": "orders/updated"})
    assert actions(updated["shopify-order-refunded"]) == REVOKE
    # The topic is an unsigned header: an unpaid order's signed body re-sent as orders/paid grants nothing.
    pending = json.dumps({**order, "financial_status": "pending"}).encode()
    forged = await run("shopify", pending, {**JSON, "X-Shopify-Topic": "orders/paid"})
    assert forged["shopify-order-paid"].decision == "not_matched"
    order["line_items"][0]["sku"] = "EBOOK"
    other = await run("shopify", json.dumps(order).encode(), {**JSON, "X-Shopify-Topic": "orders/paid"})
    assert other["shopify-order-paid"].decision == "not_matched"


async def test_lead_magnet_signup():
    body = urlencode({"email": " Lea@Yopmail.com ", "first_name": "Lea", "website": ""}).encode()
    outcome = (await run("lead-magnet", body, FORM))["lead-magnet-signup"]
    assert (outcome.decision, outcome.contact_email) == ("matched", "lea@yopmail.com")
    assert actions(outcome) == [("tag", {"name": "Lead magnet"})]
    assert contact(outcome)["unless_tagged"] == "Lead magnet"
    assert ruleset("lead-magnet").sources["leads"].honeypot == "website"


async def test_calendly_booking_cancellation_and_reschedule():
    booked = (await run("calendly", json.dumps(calendly_invitee("ada@yopmail.com")).encode(), JSON))["call-booked"]
    assert (booked.decision, booked.contact_email) == ("matched", "ada@yopmail.com")
    assert contact(booked)["fields"] == {"first_name": "Ada", "surname": "Lovelace"}
    assert actions(booked) == [("tag", {"name": "Call booked"}), ("untag", {"name": "Call cancelled"})]
    single_name = calendly_invitee()
    single_name["payload"].update(first_name=None, last_name=None, name="Grace Hopper")
    outcome = (await run("calendly", json.dumps(single_name).encode(), JSON))["call-booked"]
    assert contact(outcome)["fields"] == {"first_name": "Grace"}
    canceled = calendly_invitee(event="invitee.canceled")
    outcome = (await run("calendly", json.dumps(canceled).encode(), JSON))["call-cancelled"]
    assert actions(outcome) == [("untag", {"name": "Call booked"}), ("tag", {"name": "Call cancelled"})]
    canceled["payload"]["rescheduled"] = True
    assert (await run("calendly", json.dumps(canceled).encode(), JSON))["call-cancelled"].decision == "not_matched"


# What each recipe's table in the README promises, as the simulator shows it after each of its samples in turn:
# (sample, tags, courses, communities) of ada@yopmail.com, the person every sample is about.
EFFECTS: dict[str, list[tuple[str, list[str], list[str], list[str]]]] = {
    "stripe-course": [
        ("checkout", ["Masterclass buyer"], ["Masterclass"], ["Insiders"]),
        ("refund", [], [], []),
    ],
    "gumroad": [("sale", ["Masterclass buyer"], ["Masterclass"], []), ("refund", [], [], [])],
    "shopify": [("order-paid", ["Masterclass buyer"], ["Masterclass"], []), ("refund", [], [], [])],
    "lead-magnet": [("signup", ["Lead magnet"], [], [])],
    "calendly": [("invitee-created", ["Call booked"], [], []), ("invitee-canceled", ["Call cancelled"], [], [])],
}


def effects(sim, email: str) -> tuple[list[str], list[str], list[str]]:
    contact = sim.contact(email)
    mine = contact["id"] if contact else None
    courses = sorted(e["course"]["name"] for e in sim.account.enrollments.values() if e["contact"]["id"] == mine)
    groups = sorted(m["community"]["name"] for m in sim.account.memberships.values() if m["contact"]["id"] == mine)
    return sim.tag_names(email), courses, groups


@pytest.mark.parametrize("name", list(RECIPES))
async def test_each_recipes_samples_do_what_its_table_promises(
    name, make_settings, database_url, sim, tmp_path, monkeypatch
):
    for variable, value in ENV.items():
        monkeypatch.setenv(variable, value)
    rules_file = tmp_path / "recipe.yaml"  # make_settings writes its own rules.yaml
    rules_file.write_text(RECIPES[name].text())
    loaded = parse_rules(RECIPES[name].text(), path=str(rules_file), env=ENV)
    with running(make_settings(database_url=database_url, rules_file=str(rules_file))) as url:
        for sample, tags, courses, communities in EFFECTS[name]:
            # What `systeme-flow send --source SOURCE SAMPLE` posts, headers and signature included.
            body, headers, query = prepare(loaded, RECIPES[name].source, sample, [])
            async with httpx.AsyncClient(base_url=url) as http:
                answer = await http.post(f"/hooks/{RECIPES[name].source}", content=body, headers=headers, params=query)
            assert answer.status_code in (202, 303), answer.text
            # With the simulator's default delay before a new membership is listed, a refund right after the
            # purchase looks for it again 15 s later (as against a real account): the effects take that long.
            await wait_for(
                lambda t=tags, c=courses, g=communities: effects(sim, "ada@yopmail.com") == (t, c, g), timeout=45
            )
        async with operator(url) as http:
            matched = {r for e in (await http.get("/v1/events")).json()["items"] for r in e["rules"]}
    assert matched == {rule.id for rule in loaded.file.rules}  # every rule of the recipe, refunds included
    if name == "lead-magnet":
        fields = {f["slug"]: f["value"] for f in sim.contact("ada@yopmail.com")["fields"]}
        assert fields["first_name"] == "Ada"  # the sample's `name`, as the recipe reads a form with one name field


async def test_send_posts_a_shopify_refund_with_its_topic_and_refuses_a_file_without_one(
    make_settings, sqlite_url, sim, tmp_path, monkeypatch
):
    monkeypatch.setenv("SHOPIFY_WEBHOOK_SECRET", ENV["SHOPIFY_WEBHOOK_SECRET"])
    rules_file = tmp_path / "recipe.yaml"  # make_settings writes its own rules.yaml
    rules_file.write_text(RECIPES["shopify"].text())
    env = {"RULES_FILE": str(rules_file), "SHOPIFY_WEBHOOK_SECRET": ENV["SHOPIFY_WEBHOOK_SECRET"]}
    (tmp_path / "order.json").write_text(json.dumps(shopify_order("jon@yopmail.com")))
    refused = cli("send", "--source", "shop", "order.json", cwd=tmp_path, **env)
    assert refused.returncode == 2 and refused.stderr == (
        "systeme-flow send: a shopify webhook names its topic in X-Shopify-Topic: add --header "
        "X-Shopify-Topic:orders/paid (the rules of 'shop' listen to orders/paid, orders/updated)\n"
    )
    with running(make_settings(database_url=sqlite_url, rules_file=str(rules_file))) as url:
        for _ in range(2):  # a second send is a second delivery, not a duplicate
            done = cli("send", "--source", "shop", "refund", "--url", url, cwd=tmp_path, **env)
            assert done.returncode == 0 and done.stdout.startswith("202 stored as evt_"), done.stdout + done.stderr
        async with operator(url) as http:
            items = (await http.get("/v1/events")).json()["items"]
    assert [(e["type"], e["rules"]) for e in items] == [("orders/updated", ["shopify-order-refunded"])] * 2


class TestInitCommand:
    def test_without_a_recipe_it_lists_them(self, tmp_path):
        done = cli("init", cwd=tmp_path)
        assert done.returncode == 0
        assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == list(RECIPES)
        assert not (tmp_path / "rules.yaml").exists()

    def test_generated_token_is_written_and_checked(self, tmp_path):
        done = cli("init", "--recipe", "lead-magnet", "--dir", "site", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "1 rule, 1 source: OK"
        assert (tmp_path / "site" / "rules.yaml").read_text() == RECIPES["lead-magnet"].text()
        env = (tmp_path / "site" / ".env").read_text()
        (token,) = re.findall(r"^LEAD_FORM_TOKEN=(\S+)$", env, re.M)
        assert len(token) >= 32 and token not in done.stdout
        assert (tmp_path / "site" / ".env").stat().st_mode & 0o077 == 0
        # The service started there reads the same values.
        assert cli("check", cwd=tmp_path / "site").stdout == "1 rule, 1 source: OK\n"

    def test_provider_secrets_are_explained_not_invented(self, tmp_path):
        done = cli("init", "--recipe", "stripe-course", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "to do: set STRIPE_WEBHOOK_SECRET" in done.stdout and "whsec_" in done.stdout
        assert "environment variable STRIPE_WEBHOOK_SECRET is not set" in done.stdout
        assert re.search(r"^# STRIPE_WEBHOOK_SECRET=$", (tmp_path / ".env").read_text(), re.M)
        assert not re.search(r"^STRIPE_WEBHOOK_SECRET", (tmp_path / ".env").read_text(), re.M)

    def test_existing_rules_need_force_and_existing_env_values_stay(self, tmp_path):
        (tmp_path / "rules.yaml").write_text("mine\n")
        (tmp_path / ".env").write_text("ADMIN_TOKEN=keep-me\nCALENDLY_SIGNING_KEY=already-chosen")
        refused = cli("init", "--recipe", "calendly", cwd=tmp_path)
        assert refused.returncode == 1 and "--force" in refused.stderr
        assert (tmp_path / "rules.yaml").read_text() == "mine\n"
        done = cli("init", "--recipe", "calendly", "--force", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        env = (tmp_path / ".env").read_text()
        # Values already set stay as they are; only what was missing (the metrics token) is added below them.
        assert env.startswith("ADMIN_TOKEN=keep-me\nCALENDLY_SIGNING_KEY=already-chosen\n")
        assert re.findall(r"^(\w+)=", env, re.M) == ["ADMIN_TOKEN", "CALENDLY_SIGNING_KEY", "METRICS_TOKEN"]
        assert done.stdout.splitlines()[-1] == "2 rules, 1 source: OK"

    def test_admin_token_is_generated_when_missing(self, tmp_path):
        done = cli("init", "--recipe", "gumroad", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "added ADMIN_TOKEN to .env: a fresh random value" in done.stdout
        env = (tmp_path / ".env").read_text()
        (token,) = re.findall(r"^ADMIN_TOKEN=(\S+)$", env, re.M)
        assert len(token) >= 32 and token not in done.stdout
        assert Settings(_env_file=tmp_path / ".env").operators() == {token: "admin"}

    def test_a_metrics_token_is_generated_and_closes_metrics(self, tmp_path):
        done = cli("init", "--recipe", "gumroad", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "added METRICS_TOKEN to .env: a fresh random value" in done.stdout
        (token,) = re.findall(r"^METRICS_TOKEN=(\S+)$", (tmp_path / ".env").read_text(), re.M)
        assert len(token) >= 32 and token not in done.stdout
        metrics_token = Settings(_env_file=tmp_path / ".env").metrics_token
        assert metrics_token is not None and metrics_token.get_secret_value() == token

    def test_placeholders_of_generated_values_are_replaced_and_env_made_private(self, tmp_path):
        example = (ROOT / ".env.example").read_text()
        (tmp_path / ".env").write_text(example + "export GUMROAD_TOKEN = replace_me\n")
        (tmp_path / ".env").chmod(0o644)
        done = cli("init", "--recipe", "gumroad", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        env = (tmp_path / ".env").read_text()
        assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
        assert len(re.findall(r"^ADMIN_TOKEN=", env, re.M)) == len(re.findall(r"^GUMROAD_TOKEN=", env, re.M)) == 1
        values = dotenv_values(tmp_path / ".env")
        assert not is_placeholder(values["ADMIN_TOKEN"] or "") and not is_placeholder(values["GUMROAD_TOKEN"] or "")
        assert len(re.findall(r"^METRICS_TOKEN=", env, re.M)) == 1 and not is_placeholder(values["METRICS_TOKEN"] or "")
        # What the provider gives cannot be invented: it stays for the person to set.
        assert values["STRIPE_WEBHOOK_SECRET"] == "whsec_replace_me"

    def test_unknown_recipe(self, tmp_path):
        done = cli("init", "--recipe", "zapier", cwd=tmp_path)
        assert done.returncode == 1 and "no recipe named 'zapier'" in done.stderr
        assert not (tmp_path / "rules.yaml").exists()
