"""Sample events signed as their providers sign them, posted to a real running service: every source type."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import parse_qsl

import httpx
import pytest

from app.rules.loader import parse_rules
from app.samples import samples_for, signed_request
from app.samples.signing import sample_body
from tests.clitools import cli, cli_env
from tests.conftest import operator, running
from tests.factories import RULES, STRIPE_SECRET, write_rules
from tests.provider_payloads import rules_with_every_source

ALL_RULES = rules_with_every_source(RULES)
SOURCES = parse_rules(ALL_RULES, path="rules.yaml", env={}).file.sources
CASES = [(name, sample.name) for name, config in SOURCES.items() for sample in samples_for(config.type)]


@pytest.fixture
def service(make_settings, sqlite_url, tmp_path):
    settings = make_settings(database_url=sqlite_url, systeme_api_key=None)
    write_rules(tmp_path, ALL_RULES)
    with running(settings) as url:
        yield url


def test_every_source_type_has_a_sample():
    assert {config.type for config in SOURCES.values()} == {
        "stripe",
        "systeme",
        "systeme-automation",
        "standard-webhooks",
        "paddle",
        "lemonsqueezy",
        "typeform",
        "tally",
        "gumroad",
        "form",
        "json",
        "shopify",
        "woocommerce",
        "thrivecart",
        "calendly",
    }
    assert all(samples_for(config.type) for config in SOURCES.values())


@pytest.mark.parametrize(("source", "name"), CASES)
async def test_each_signed_sample_is_stored_by_the_service(service, source, name):
    config = SOURCES[source]
    sample = next(s for s in samples_for(config.type) if s.name == name)
    body = sample_body(config, sample)
    headers, query = signed_request(config, body, {"Content-Type": sample.content_type, **sample.headers})
    async with httpx.AsyncClient(base_url=service) as http:
        answer = await http.post(f"/hooks/{source}", content=body, headers=headers, params=query)
        # The same bytes signed with another secret are refused: the signature is what let it in.
        if config.secret:
            forged = config.model_copy(update={"secret": ("not-the-secret",)})
            # ThriveCart's secret travels inside the body; the others sign the same bytes.
            bad_body = sample_body(forged, sample) if config.type == "thrivecart" else body
            bad_headers, _ = signed_request(forged, bad_body, {"Content-Type": sample.content_type, **sample.headers})
            assert (await http.post(f"/hooks/{source}", content=bad_body, headers=bad_headers)).status_code == 401
    assert answer.status_code == (303 if config.redirect else 202), answer.text
    async with operator(service) as http:
        (stored,) = (await http.get("/v1/events", params={"source": source})).json()["items"]
        event = (await http.get(f"/v1/events/{stored['id']}")).json()
    if config.type == "thrivecart":
        # Bracketed keys read as nested objects too; the secret word is never stored.
        assert event["payload"]["customer"]["email"] == "ada@yopmail.com"
        assert "thrivecart_secret" not in event["payload"]
    else:
        assert event["payload"] == (dict(parse_qsl(body.decode())) if sample.form else json.loads(body))
    if config.type == "systeme":
        # From the header the sample carries, as Systeme.io sends it.
        assert event["type"] == sample.headers["X-Webhook-Event"]


def test_send_posts_a_sample_or_a_file_and_reports_the_answer(service, tmp_path):
    env = {"RULES_FILE": str(tmp_path / "rules.yaml")}
    done = cli("send", "--source", "stripe", "checkout", "--url", service, cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 stored as evt_") and f"{service}/ui/events/evt_" in done.stdout
    # The form source redirects the visitor; the sample carries a full name.
    done = cli("send", "--source", "signup", "signup", "--url", service, cwd=tmp_path, **env)
    assert (done.returncode, done.stdout) == (0, "303 stored; the visitor is sent to https://example.com/thanks\n")
    (tmp_path / "sale.json").write_text('{"pricePlan": {"name": "VIP"}, "customer": {"email": "v@yopmail.com"}}')
    done = cli(
        "send", "--source", "systeme", "sale.json", "--header", "X-Webhook-Event:SALE_NEW", "--url", service,
        cwd=tmp_path, **env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with httpx.Client(base_url=service, headers={"Authorization": "Bearer operator-token-for-tests"}) as http:
        items = http.get("/v1/events").json()["items"]
    assert [(e["source"], e["type"]) for e in items] == [
        ("systeme", "SALE_NEW"),
        ("signup", None),
        ("stripe", "checkout.session.completed"),
    ]
    assert items[1]["contacts"] == ["ada@yopmail.com"]


def test_send_with_the_wrong_secret_is_refused_and_says_so(service, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(ALL_RULES.replace(STRIPE_SECRET, "whsec_someone_elses"))
    done = cli("send", "--source", "stripe", "refund", "--url", service, "--rules", str(other), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("401 refused: Stripe signature does not match")


def test_send_explains_what_it_cannot_do(tmp_path):
    write_rules(tmp_path)
    done = cli("send", "--source", "stripe", "chekout", cwd=tmp_path)
    assert done.returncode == 2
    assert (
        "'chekout' is neither a file nor a sample of 'stripe' (checkout, refund, subscription-deleted)" in done.stderr
    )
    done = cli("send", "--source", "stripe", "checkout", "--url", "http://127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 2 and "cannot reach http://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


def test_samples_lists_them_per_source_and_prints_one(tmp_path):
    write_rules(tmp_path)
    listed = cli("samples", cwd=tmp_path).stdout
    assert "stripe (stripe):\n  checkout " in listed and "signup (form):\n  signup " in listed
    printed = subprocess.run(
        [sys.executable, "-m", "app", "samples", "--source", "stripe", "refund"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert '"type": "charge.refunded"' in printed.stdout


def test_send_and_health_find_the_service_through_systeme_flow_url(service, tmp_path):
    env = {"RULES_FILE": str(tmp_path / "rules.yaml"), "SYSTEME_FLOW_URL": service}
    done = cli("send", "--source", "stripe", "checkout", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 stored as evt_") and f"{service}/ui/events/evt_" in done.stdout
    done = cli("health", "api", cwd=tmp_path, **env)
    assert (done.returncode, done.stdout) == (0, f"healthy: api: {service}/healthz answered 200\n")
    done = cli("health", "api", "--url", service, cwd=tmp_path, SYSTEME_FLOW_URL="http://127.0.0.1:1")
    assert done.returncode == 0, done.stdout  # --url wins over the setting


def test_a_refused_connection_names_the_ways_to_another_address(tmp_path):
    write_rules(tmp_path)
    for command in (["send", "--source", "stripe", "checkout"], ["health", "api"]):
        done = cli(*command, cwd=tmp_path, SYSTEME_FLOW_URL="http://127.0.0.1:1")
        said = done.stderr + done.stdout
        assert done.returncode in (1, 2) and "http://127.0.0.1:1" in said, said
        assert "--url or SYSTEME_FLOW_URL" in said and "make run PORT=" in said, said
        assert "Traceback" not in said and said.count("\n") == 1
