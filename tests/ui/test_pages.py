"""The dashboard's pages over plain HTTP: who and what on the events list, honest per-rule counts, samples."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx

from app.simulator.state import Fault
from tests.clitools import cli_env
from tests.conftest import ADMIN, operator, post_stripe, running, wait_for
from tests.factories import FORM_TOKEN, SHOP_RULES, checkout_for, stripe_checkout, write_rules
from tests.flows import settled

BEARER = {"Authorization": f"Bearer {ADMIN}"}


async def test_events_show_who_and_which_rules_in_the_ui_the_api_and_the_cli(make_settings, sqlite_url, tmp_path):
    with running(make_settings(database_url=sqlite_url)) as url:
        paid = await post_stripe(url, stripe_checkout("Ada@Yopmail.com"))
        await post_stripe(url, stripe_checkout("unpaid@yopmail.com", paid=False))
        async with httpx.AsyncClient(base_url=url) as http:
            form = await http.post(f"/hooks/contact?token={FORM_TOKEN}", data={"email": "grace@yopmail.com"})
            assert form.status_code == 202
        await settled(url, paid)
        async with operator(url) as http:
            items = (await http.get("/v1/events")).json()["items"]
            page = (await http.get("/ui")).text
            # Where a user guesses the list is, with the filters kept.
            guessed = await http.get("/ui/events", params={"source": "stripe"})
            rejected = await http.get("/v1/events", params={"status": "bogus"})
    assert [(e["contacts"], e["rules"]) for e in items] == [
        ([], []),  # the `contact` form source: no rule listens to it
        ([], []),  # an unpaid checkout: the rule did not match, nobody to name
        (["ada@yopmail.com"], ["masterclass-purchase"]),
    ]
    assert items[2]["actions"] == {"succeeded": 3}
    assert '<a class="person" href="/ui/contacts/ada%40yopmail.com">ada@yopmail.com</a>' in page
    assert re.search(r'<td class="wide">masterclass-purchase</td>\s*<td class="outcome">', page)
    assert rejected.status_code == 400 and "awaiting_approval" in rejected.json()["error"]
    assert guessed.status_code == 307 and guessed.headers["location"] == "/ui?source=stripe"
    done = subprocess.run(
        [sys.executable, "-m", "app", "events"],
        cwd=tmp_path, env=cli_env(DATABASE_URL=sqlite_url), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert re.fullmatch(
        r"evt_\w+  \S{10}T\S{8}  ada@yopmail\.com  stripe/checkout\.session\.completed  "
        r"\[masterclass-purchase\]  \(3 succeeded\)",
        last,
    ), last
    assert "[no rule matched]  (no actions)" in done.stdout.splitlines()[0]


async def test_rule_counts_are_events_and_replays_neither_inflate_nor_repeat(make_settings, sqlite_url, sim):
    settings = make_settings(database_url=sqlite_url, retry_schedule="0.05s", retry_max_attempts=1)
    with running(settings) as url:
        good = await post_stripe(url, stripe_checkout("good@yopmail.com"))
        await settled(url, good)
        sim.account.faults.append(Fault(500, 1000, "/api/school"))
        bad = await post_stripe(url, stripe_checkout("bad@yopmail.com"))
        await settled(url, bad)
        sim.account.faults.clear()
        async with operator(url) as http:
            for _ in range(2):
                assert (await http.post(f"/v1/events/{good}/replay")).status_code == 200
                await settled(url, good)
            page = (await http.get("/ui/rules")).text
            assert counts(page, "masterclass-purchase") == (2, 1, 1)  # 2 events, not 4 matches; 9 actions
            event = (await http.get(f"/v1/events/{good}")).json()
            event_page = (await http.get(f"/ui/events/{good}")).text
            listed = (await http.get("/v1/events")).json()["items"]
            # A replay after the fault is gone: the rule's latest planning of that event is what counts.
            await http.post(f"/v1/events/{bad}/replay")
            await settled(url, bad)
            assert counts((await http.get("/ui/rules")).text, "masterclass-purchase") == (2, 2, 0)
    (judged,) = [r for r in event["rules"] if r["rule_id"] == "masterclass-purchase"]
    assert judged["decision"] == "matched" and judged["replayed_at"] is not None
    assert [e["replayed_at"] is None for e in judged["earlier"]] == [True, False]
    assert len(event["actions"]) == 9
    assert event_page.count('<strong>masterclass-purchase</strong> <span class="badge matched">') == 1
    assert "judged again by a replay at" in event_page and "(before: matched, then matched)" in event_page
    assert listed[1]["rules"] == ["masterclass-purchase"] and listed[1]["actions"] == {"succeeded": 9}
    assert "Counts cover the events received in the last 24 hours" in page


def counts(page: str, rule_id: str) -> tuple[int, int, int]:
    row = page[page.index(f'<tr id="rule-{rule_id}"') :]
    row = row[: row.index("</tr>")]
    found = re.findall(r"<td>(\d+)</td>", row)
    return int(found[0]), int(found[1]), int(found[2])


async def test_rules_page_shows_when_and_what_and_tests_a_sample(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        async with operator(url) as http:
            page = (await http.get("/ui/rules")).text
            sample = (await http.get("/ui/rules", params={"source": "systeme", "sample": "sale"})).text
            payload = json.loads(
                sample.split('name="payload" rows="12">')[1].split("</textarea>")[0].replace("&#34;", '"')
            )
            tested = await http.post(
                "/ui/rules/test",
                data={"source": "systeme", "payload": json.dumps(payload), "headers": "X-Webhook-Event: SALE_NEW"},
            )
            form = await http.post(
                "/ui/rules/test",
                data={"source": "signup", "payload": json.dumps({"email": "f@yopmail.com", "first_name": "Fay"})},
            )
            unknown = await http.get("/ui/rules", params={"source": "stripe", "sample": "nope"})
    row = page[page.index('<tr id="rule-masterclass-purchase"') :].split("</tr>")[0]
    assert "on <code>stripe/checkout.session.completed</code>" in row
    assert "if <code>event.data.object.payment_status == &#34;paid&#34;</code>" in row
    assert "<li>tag: Masterclass buyer</li>" in row and "<li>enroll: course 101, access full_access</li>" in row
    assert "cancel_subscription: subscription {{ event.data.object.metadata.systeme_subscription_id }}" in page
    assert "when Now · approval required" in page
    assert 'href="/ui/rules?source=stripe&amp;sample=refund#test"' in page
    assert payload["pricePlan"]["name"] == "VIP"
    assert "X-Webhook-Event: SALE_NEW</textarea>" in sample
    assert "MATCH vip-sale" in tested.text
    assert "MATCH newsletter" in form.text and "&#34;first_name&#34;: &#34;Fay&#34;" in form.text
    assert unknown.status_code == 404 and "samples: checkout, refund, subscription-deleted" in unknown.json()["error"]


def test_root_redirects_to_the_dashboard(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        answer = httpx.get(f"{url}/", headers=BEARER, follow_redirects=True)
    assert answer.status_code == 200 and answer.url.path == "/ui" and "<h1>Events</h1>" in answer.text


async def test_every_action_shows_its_outcome_and_when_it_runs_again(make_settings, sqlite_url, sim, tmp_path):
    sim.account.faults.append(Fault(503, 1, "/api/school"))
    # The retry is an hour away: the action still waits while the pages and the command (a fresh process, slow to
    # start on a loaded machine) are read, however long that takes.
    with running(make_settings(database_url=sqlite_url, retry_schedule="1h")) as url:
        event_id = await post_stripe(url, stripe_checkout("later@yopmail.com"))

        async def enroll_waits() -> bool:
            async with operator(url) as http:
                actions = (await http.get(f"/v1/events/{event_id}")).json()["actions"]
            return any(a["kind"] == "enroll" and a["status"] == "pending" and a["attempts"] == 1 for a in actions)

        await wait_for(enroll_waits)
        async with operator(url) as http:
            actions = {a["kind"]: a for a in (await http.get(f"/v1/events/{event_id}")).json()["actions"]}
            page = (await http.get(f"/ui/events/{event_id}")).text
            listed = (await http.get("/ui/actions", params={"status": "pending"})).text
        done = subprocess.run(
            [sys.executable, "-m", "app", "actions", "--status", "pending"],
            cwd=tmp_path, env=cli_env(DATABASE_URL=sqlite_url), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert actions["tag"]["outcome"] == "tagged" and actions["enroll"]["next_attempt_at"]
    assert "tagged" in page and "next attempt" in page and "next attempt" in listed
    assert "503" in done.stdout and "(next attempt " in done.stdout


def test_an_empty_action_list_says_what_is_empty(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            attention = http.get("/ui/actions").text
            succeeded = http.get("/ui/actions", params={"status": "succeeded"}).text
            awaiting = http.get("/ui/actions", params={"status": "awaiting_approval"}).text
            typo = http.get("/ui/actions", params={"status": "sucess"}).text
    assert "Nothing needs you." in attention
    assert "No succeeded actions." in succeeded and "Nothing needs you" not in succeeded
    assert "No awaiting approval actions." in awaiting
    assert "“sucess” is not a status" in typo


async def test_a_dry_run_says_so_on_every_page_and_lists_its_skipped_actions(make_settings, database_url):
    with running(make_settings(database_url=database_url, systeme_api_key=None)) as url:
        event = await post_stripe(url, stripe_checkout("dry@yopmail.com"))
        await settled(url, event)
        async with operator(url) as http:
            pages = {path: (await http.get(path)).text for path in ("/ui", "/ui/actions", "/ui/rules")}
            pages[f"/ui/events/{event}"] = (await http.get(f"/ui/events/{event}")).text
            skipped = (await http.get("/ui/actions?status=skipped")).text
    for path, page in pages.items():
        assert "<strong>Dry run</strong>: neither SYSTEME_API_KEY nor MATON_API_KEY" in page, path
        assert 'href="/ui/actions?status=skipped"' in page, path
    assert "Actions: skipped" in skipped and "Not sent: planned in a dry run" in skipped
    assert len(set(re.findall(r'<tr id="(act_\w+)"', skipped))) == 3  # the purchase's three steps
    assert skipped.count("dry run: no MATON_API_KEY or SYSTEME_API_KEY is set") == 3


async def test_with_a_key_no_dry_run_banner(make_settings, sqlite_url):
    with running(make_settings(database_url=sqlite_url)) as url, httpx.Client(base_url=url, headers=BEARER) as http:
        assert "Dry run" not in http.get("/ui").text


async def test_a_contact_page_is_linked_encoded_and_escaped_and_the_handled_form_needs_its_token(
    make_settings, sqlite_url, tmp_path
):
    settings = make_settings(database_url=sqlite_url)
    write_rules(tmp_path, SHOP_RULES)  # after the settings, which write the default rules there
    odd = "o'hara+vip@yopmail.com"
    with running(settings) as url:
        await post_stripe(url, checkout_for(odd, "masterclass"))
        unmapped = await post_stripe(url, checkout_for("eve@yopmail.com", "<script>alert(1)</script>"))
        async with operator(url) as http:
            home = (await http.get("/ui")).text
            contact = await http.get("/ui/contacts/o%27hara%2Bvip%40yopmail.com")
            nobody = await http.get("/ui/contacts/nobody%40yopmail.com")
        async with httpx.AsyncClient(base_url=url) as http:
            await http.post("/ui/login", data={"token": ADMIN})
            forged = await http.post(f"/ui/payments/{unmapped}/handled", data={"csrf": "guess", "reason": "x"})
            signed = await http.get("/ui")
            csrf = re.search(r'name="csrf" value="([^"]+)"', signed.text)
            assert csrf is not None
            empty = await http.post(f"/ui/payments/{unmapped}/handled", data={"csrf": csrf[1], "reason": " "})
            done = await http.post(
                f"/ui/payments/{unmapped}/handled", data={"csrf": csrf[1], "reason": "test order", "back": "//evil"}
            )
            after = (await http.get("/ui")).text
    assert '<a class="person" href="/ui/contacts/o%27hara%2Bvip%40yopmail.com">o&#39;hara+vip@yopmail.com</a>' in home
    # The unmapped product heads the page, its name escaped.
    assert 'id="unserved"' in home and "&lt;script&gt;alert(1)&lt;/script&gt;" in home and "<script>" not in home
    assert contact.status_code == 200 and "<h1>o&#39;hara+vip@yopmail.com" in contact.text
    assert "masterclass 199.00 EUR" in contact.text and "Masterclass buyer" in contact.text
    assert nobody.status_code == 200 and "No event about nobody@yopmail.com" in nobody.text
    assert forged.status_code == 401
    assert empty.status_code == 422 and "reason" in empty.json()["error"]
    assert done.status_code == 303 and done.headers["location"] == "/ui/actions"  # off-site back refused
    assert 'id="unserved"' not in after


async def test_replay_on_the_home_page_serves_a_buyer_once_the_rules_map_the_product(
    make_settings, sqlite_url, tmp_path
):
    settings = make_settings(database_url=sqlite_url)
    rules = write_rules(tmp_path, SHOP_RULES)
    with running(settings) as url:
        unmapped = await post_stripe(url, checkout_for("fred@yopmail.com", "ebook"))
        async with operator(url) as http:
            assert f'action="/ui/events/{unmapped}/replay"' in (await http.get("/ui")).text
            ebook = SHOP_RULES.replace('== "bootcamp"', '== "ebook"')
            rules.write_text(ebook)  # the seller maps the new product

            async def reloaded() -> bool:
                return "ebook" in (await http.get("/ui/rules")).text

            await wait_for(reloaded)
        async with httpx.AsyncClient(base_url=url) as http:
            await http.post("/ui/login", data={"token": ADMIN})
            csrf = re.search(r'name="csrf" value="([^"]+)"', (await http.get("/ui")).text)
            assert csrf is not None
            replayed = await http.post(f"/ui/events/{unmapped}/replay", data={"csrf": csrf[1], "back": "/ui"})
        async with operator(url) as http:

            async def served() -> bool:
                items = (await http.get("/v1/payments")).json()["items"]
                return [p["status"] for p in items] == ["served"]

            await wait_for(served)
            home = (await http.get("/ui")).text
    assert replayed.status_code == 303 and replayed.headers["location"] == "/ui"
    assert 'id="unserved"' not in home
