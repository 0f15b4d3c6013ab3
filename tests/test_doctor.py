"""`systeme-flow doctor`: the going-live checks in order, what is missing, exit status 1, and never a traceback."""

from __future__ import annotations

import json

import httpx

from tests.clitools import cli
from tests.conftest import SIM_KEY, running
from tests.factories import write_rules
from tests.shop_payloads import SHOPIFY_SECRET, shopify_headers, shopify_order


def lines(out: str) -> dict[str, str]:
    """step -> its line, e.g. {"key": "missing  key: ..."} (the first line of each step)."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        step = rest.strip().split(":", 1)[0]
        if status in ("ok", "missing", "note"):
            found.setdefault(step, line)
    return found


def test_doctor_with_nothing_set_says_what_is_missing(tmp_path):
    done = cli("doctor", cwd=tmp_path, RULES_FILE=str(tmp_path / "absent.yaml"))
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    steps = lines(done.stdout)
    assert steps["settings"].startswith("ok")
    assert steps["rules"].startswith("missing  rules:") and "absent.yaml" in steps["rules"]
    assert steps["key"].startswith("missing  key: no SYSTEME_API_KEY or MATON_API_KEY")
    assert "docs/going-live.md" in done.stdout


def test_doctor_with_invalid_settings_names_them(tmp_path):
    done = cli("doctor", cwd=tmp_path, RETENTION_DAYS="0")
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert lines(done.stdout)["settings"].startswith("missing  settings: RETENTION_DAYS")


def test_doctor_with_a_bad_key_says_the_account_refuses_it(tmp_path, sim):
    rules = write_rules(tmp_path)
    done = cli("doctor", cwd=tmp_path, RULES_FILE=str(rules), SYSTEME_API_KEY="not-the-key", SYSTEME_API_URL=sim.url)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    steps = lines(done.stdout)
    assert steps["rules"].startswith("ok")
    assert "the simulator, not live" in steps["key"]
    assert steps["check --live"].startswith("missing  check --live:")


def test_doctor_with_an_unreachable_api_says_so(tmp_path):
    rules = write_rules(tmp_path)
    done = cli(
        "doctor",
        cwd=tmp_path,
        RULES_FILE=str(rules),
        SYSTEME_API_KEY="some-key-value",
        # TEST-NET-1: never routed, so nothing answers; a short timeout keeps the test quick.
        SYSTEME_API_URL="http://192.0.2.1:9",
        HTTP_TIMEOUT_SECONDS="1",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    steps = lines(done.stdout)
    assert steps["key"].startswith("ok       key: SYSTEME_API_KEY is set: live account default")
    assert steps["check --live"].startswith("missing  check --live:")
    assert "network error reaching 192.0.2.1:9" in steps["check --live"]


def test_doctor_walks_the_simulator_to_the_first_purchase(tmp_path, sim):
    rules = write_rules(tmp_path)
    done = cli(
        "doctor",
        cwd=tmp_path,
        RULES_FILE=str(rules),
        SYSTEME_API_KEY=SIM_KEY,
        SYSTEME_API_URL=sim.url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/fresh.db",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    steps = lines(done.stdout)
    assert steps["check --live"].startswith("ok"), done.stdout
    assert steps["connect"].startswith("missing  connect: source systeme: no webhook posts to /hooks/systeme")
    # A database without tables yet: said, not raised.
    assert steps.get("events", steps.get("webhook", "")).startswith("missing")


def test_doctor_tells_a_form_its_action_and_a_signed_source_its_secret(tmp_path, sim, sqlite_url):
    rules = write_rules(tmp_path)
    done = cli(
        "doctor", cwd=tmp_path, RULES_FILE=str(rules), SYSTEME_API_KEY=SIM_KEY, SYSTEME_API_URL=sim.url,
        DATABASE_URL=sqlite_url,
    )  # fmt: skip
    webhooks = [line for line in done.stdout.splitlines() if line.startswith("missing  webhook:")]
    signup = next(line for line in webhooks if "source signup:" in line)
    assert "point your form's action (method POST) at https://YOUR-HOST/hooks/signup?token=<its token>" in signup
    assert "secret" not in signup  # a form has a token, not a secret
    stripe = next(line for line in webhooks if "source stripe:" in line)
    assert "webhook URL to https://YOUR-HOST/hooks/stripe with the same secret" in stripe


SHOP_RULES = f"""
version: 1
sources:
  shop: {{ type: shopify, secret: "{SHOPIFY_SECRET}" }}
rules:
  - id: shop-purchase
    on: shop/orders/paid
    contact: {{ email: "{{{{ event.email }}}}" }}
    actions:
      - tag: Shop buyer
"""


async def test_doctor_counts_a_shopify_refund_its_type_does_not_name(tmp_path, sim, make_settings, database_url):
    # Shopify says a full refund with `orders/updated` and `financial_status: refunded`: no "refund" in the type.
    rules = tmp_path / "shop.yaml"  # not rules.yaml: make_settings writes its own there
    rules.write_text(SHOP_RULES)
    env = {"RULES_FILE": str(rules), "SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    env["DATABASE_URL"] = database_url
    order = shopify_order()
    refunded = {**order, "financial_status": "refunded"}
    with running(make_settings(database_url=database_url, rules_file=str(rules))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            for topic, body in (("orders/paid", order), ("orders/updated", refunded)):
                raw = json.dumps(body).encode()
                answer = await http.post("/hooks/shop", content=raw, headers=shopify_headers(raw, topic=topic))
                assert answer.status_code == 202, answer.text
                if topic == "orders/paid":
                    before = lines(cli("doctor", cwd=tmp_path, **env).stdout)
    after = lines(cli("doctor", cwd=tmp_path, **env).stdout)
    assert before["refund"].startswith("missing  refund:"), before
    assert after["refund"].startswith("ok") and "refund: 1 refund or cancellation" in after["refund"], after
