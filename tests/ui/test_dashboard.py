"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import running
from tests.factories import SHOP_RULES, checkout_for, stripe_checkout, stripe_headers, stripe_refund, write_rules
from tests.flows import post_planned

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
TOKEN = "dashboard-operator-token"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (.ci/run does it) or set CHROMIUM_PATH"
        )
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        yield page
        browser.close()


def post(url: str, event: dict) -> None:
    body = json.dumps(event).encode()
    answer = httpx.post(f"{url}/hooks/stripe", content=body, headers=stripe_headers(body))
    assert answer.status_code == 202, answer.text


def test_sign_in_open_an_event_and_approve_an_action(make_settings, sqlite_url, sim, browser_page: Page):
    owner = sim.account.create_contact({"email": "browser@yopmail.com"})
    sim.simulator.seed(subscriptions=[{"id": 4242, "contactId": owner["id"]}])
    with running(make_settings(database_url=sqlite_url, admin_token=f"dana={TOKEN}")) as url:
        post(url, stripe_checkout("ada@yopmail.com"))
        post(
            url,
            {
                "id": "evt_ui_sub",
                "type": "customer.subscription.deleted",
                "created": int(time.time()),
                "data": {"object": {"metadata": {"systeme_subscription_id": "4242"}}},
            },
        )
        page = browser_page
        page.goto(f"{url}/ui")
        expect(page).to_have_url(f"{url}/ui/login")
        page.fill("input[name=token]", "wrong")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("not valid")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("h1").nth(1)).to_have_text("Events")
        expect(page.locator("table.list tbody tr")).to_have_count(2)
        page.screenshot(path=str(SHOTS / "events.png"), full_page=True)

        page.click("text=checkout.session.completed >> xpath=../..//a")
        expect(page.locator(".rules")).to_contain_text("masterclass-purchase")
        expect(page.locator(".action").first).to_contain_text("tag")
        page.screenshot(path=str(SHOTS / "event.png"), full_page=True)

        page.click("nav >> text=Actions")
        row = page.locator("table.list tbody tr", has_text="cancel subscription")
        expect(row.locator(".badge")).to_have_text("awaiting approval")
        page.screenshot(path=str(SHOTS / "actions.png"), full_page=True)
        row.locator("button", has_text="Approve").click()
        expect(page.locator("table.list tbody tr", has_text="cancel subscription")).to_have_count(0)

        page.goto(f"{url}/ui?status=succeeded")
        deadline = time.monotonic() + 15
        while sim.account.subscriptions[4242]["status"] != "cancelled":
            assert time.monotonic() < deadline, "the approved cancellation never ran"
            time.sleep(0.1)
        page.goto(f"{url}/ui/rules")
        expect(page.locator("table.list")).to_contain_text("subscription-ended")
        page.select_option("select[name=source]", "stripe")
        page.fill("textarea[name=payload]", json.dumps(stripe_checkout("preview@yopmail.com", paid=False)))
        page.click("button:has-text('Explain')")
        expect(page.locator("pre.report")).to_contain_text('payment_status was "unpaid"')
        page.screenshot(path=str(SHOTS / "rules.png"), full_page=True)

        page.goto(f"{url}/ui")
        buyer = page.locator("table.events tbody tr", has_text="ada@yopmail.com")
        expect(buyer.locator("td.wide").first).to_be_visible()
        expect(buyer.locator("td.wide").nth(1)).to_have_text("masterclass-purchase")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{url}/ui")
        # On a phone, who and what happened stay in view; source, type and rules make room for them.
        expect(buyer.locator("td.who")).to_be_visible()
        expect(buyer.locator("td.outcome .badge").first).to_be_visible()
        expect(buyer.locator("td.wide").first).to_be_hidden()
        box = buyer.locator("td.outcome").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        page.screenshot(path=str(SHOTS / "phone.png"), full_page=True)
    assert sim.account.subscriptions[4242]["status"] == "cancelled"


def test_state_changes_need_the_csrf_token(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url, admin_token=f"dana={TOKEN}")) as url:
        with httpx.Client(base_url=url) as http:
            http.post("/ui/login", data={"token": TOKEN})
            assert http.cookies.get("sf_session")
            forged = http.post("/ui/actions/act_x/approve", data={"csrf": "guess"})
            assert forged.status_code == 401 and "reload the page" in forged.json()["error"]
            page = http.get("/ui/actions")
            assert page.status_code == 200 and "Nothing needs you" in page.text
        # Scripts may use the Bearer token instead of a session.
        assert httpx.get(f"{url}/ui/rules", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(f"{url}/ui/rules", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_secure_behind_a_trusted_tls_proxy(make_settings, sqlite_url):
    proxied = {"X-Forwarded-Proto": "https"}
    for trusted, secure in (("", False), ("127.0.0.1", True)):
        settings = make_settings(database_url=sqlite_url, admin_token=TOKEN, forwarded_allow_ips=trusted)
        with running(settings) as url:
            answer = httpx.post(f"{url}/ui/login", data={"token": TOKEN}, headers=proxied)
        assert answer.status_code == 303
        attributes = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
        assert ("secure" in attributes) is secure, attributes


def test_unserved_buyers_head_the_home_page_until_handled_and_a_contact_shows_their_story(
    make_settings, sqlite_url, sim, tmp_path, browser_page: Page
):
    sim.account.forbidden.add("/api/school/courses/102")  # the account refuses the bootcamp's enrolment
    settings = make_settings(database_url=sqlite_url, admin_token=f"dana={TOKEN}")
    write_rules(tmp_path, SHOP_RULES)
    with running(settings) as url:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        post_planned(url, checkout_for("ada@yopmail.com", "masterclass"), admin=TOKEN)
        post_planned(url, checkout_for("bob@yopmail.com", "ebook", amount=2900), admin=TOKEN)
        post_planned(url, checkout_for("cy@yopmail.com", "bootcamp", amount=49900), admin=TOKEN)
        post_planned(url, checkout_for("dee@yopmail.com", "masterclass"), admin=TOKEN)

        def status_of(email: str) -> str | None:
            items = httpx.get(f"{url}/v1/payments", headers=bearer).json()["items"]
            return next((p["status"] for p in items if p["email"] == email), None)

        deadline = time.monotonic() + 15
        while {status_of(e) for e in ("ada@yopmail.com", "dee@yopmail.com")} != {"served"} or status_of(
            "cy@yopmail.com"
        ) != "unserved":
            assert time.monotonic() < deadline, "the payments never settled"
            time.sleep(0.1)
        post_planned(url, stripe_refund("ada@yopmail.com"), admin=TOKEN)

        page = browser_page
        page.goto(f"{url}/ui/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        head = page.locator("#unserved")
        expect(head.locator("h1")).to_contain_text("Paid, no access yet")
        rows = head.locator("tbody tr")
        expect(rows).to_have_count(2)
        bob, cy = rows.filter(has_text="bob@yopmail.com"), rows.filter(has_text="cy@yopmail.com")
        expect(bob).to_contain_text("ebook")
        expect(bob).to_contain_text("29.00 EUR")
        expect(bob.locator(".reason")).to_have_text("no rule matched this payment")
        expect(cy).to_contain_text("499.00 EUR")
        expect(cy.locator(".reason")).to_contain_text("enroll failed")
        expect(cy.locator("button", has_text="Retry")).to_have_count(1)
        expect(cy.locator("button", has_text="Replay")).to_have_count(1)
        page.screenshot(path=str(SHOTS / "home-unserved.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        # On a phone every buyer's buttons stay in view, without scrolling sideways.
        box = cy.locator("button", has_text="Handled").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 1200, "height": 900})

        bob.locator("input[name=reason]").fill("gave the ebook by email")
        bob.locator("button", has_text="Handled").click()
        expect(page.locator("#unserved tbody tr")).to_have_count(1)
        expect(page.locator("#unserved tbody tr")).to_contain_text("cy@yopmail.com")
        handled = httpx.get(f"{url}/v1/payments", params={"status": "handled"}, headers=bearer).json()["items"]
        assert [(p["email"], p["handled"]["by"], p["handled"]["reason"]) for p in handled] == [
            ("bob@yopmail.com", "dana", "gave the ebook by email")
        ]

        page.locator("#unserved a.person", has_text="cy@yopmail.com").click()
        expect(page).to_have_url(f"{url}/ui/contacts/cy%40yopmail.com")
        expect(page.locator(".story")).to_contain_text("bootcamp")
        expect(page.locator(".story .badge.failed")).to_have_count(1)
        expect(page.locator(".story button", has_text="Retry")).to_have_count(1)
        expect(page.locator(".story h3 .badge.unserved")).to_have_text("unserved")
        expect(page.locator(".story form.handle")).to_have_count(1)

        page.goto(f"{url}/ui/contacts/ada%40yopmail.com")
        story = page.locator(".story .event")
        expect(story).to_have_count(2)
        expect(story.nth(0).locator(".badge.payment")).to_have_text("payment")
        expect(story.nth(0)).to_contain_text("masterclass 199.00 EUR")
        expect(story.nth(0).locator("h3 .badge.refunded")).to_have_text("refunded")
        expect(story.nth(1).locator(".badge.refund")).to_have_text("refund")
        scheduled = page.locator(".scheduled .action")
        expect(scheduled).to_have_count(1)
        expect(scheduled).to_contain_text("Week one done")
        expect(scheduled.locator("button", has_text="Cancel")).to_be_visible()
        expect(page.locator(".mirror")).to_contain_text("Masterclass buyer")
        page.screenshot(path=str(SHOTS / "contact.png"), full_page=True)

        page.click("nav >> text=Sales")
        expect(page.locator("table.revenue")).to_contain_text("bootcamp")
        # Ada's masterclass was refunded: only Dee's counts.
        expect(page.locator("table.revenue tr", has_text="masterclass")).to_contain_text("199.00")
        expect(page.locator(".waits .figures")).to_contain_text("1 buyer served")
        expect(page.locator("table.slowest")).to_contain_text("dee@yopmail.com")
        page.screenshot(path=str(SHOTS / "sales.png"), full_page=True)
