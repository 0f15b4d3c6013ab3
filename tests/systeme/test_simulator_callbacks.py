"""The simulator sends Systeme.io webhooks back for the API's own writes, signed as Systeme.io signs them: end to
end, the service registers its webhook with `connect`, acts on an event, and stores what the account fires back."""

from __future__ import annotations

import httpx

from tests.clitools import run_cli
from tests.conftest import SIM_KEY, operator, post_stripe, running, wait_for
from tests.factories import RULES, stripe_checkout, stripe_refund, write_rules

# A rule that listens to the contact events (so `connect` subscribes to them) and never acts.
CALLBACK_RULES = (
    RULES
    + """
  - id: seen-in-systeme
    on: [systeme/CONTACT_CREATED, systeme/CONTACT_TAG_ADDED, systeme/CONTACT_TAG_REMOVED]
    if: event.tag.name == "never"
    contact: { email: "{{ event.contact.email }}" }
    actions: [ { tag: Never } ]
"""
)


async def systeme_events(url: str) -> list[dict]:
    async with operator(url) as http:
        items = (await http.get("/v1/events", params={"source": "systeme"})).json()["items"]
        return [(await http.get(f"/v1/events/{item['id']}")).json() for item in items]


async def test_the_accounts_webhooks_for_our_own_writes_come_back_signed_and_are_stored(
    make_settings, database_url, sim, tmp_path
):
    folder = tmp_path / "flow"
    folder.mkdir()
    settings = make_settings(database_url=database_url, rules_file=str(write_rules(folder, CALLBACK_RULES)))
    with running(settings) as url:
        done = run_cli("connect", "--url", url, cwd=folder, SYSTEME_API_KEY=SIM_KEY, SYSTEME_API_URL=sim.url)
        assert done.returncode == 0, done.stderr
        await post_stripe(url, stripe_checkout("lin.chen@gmail.com"))

        async def fired_back() -> bool:
            return {e["type"] for e in await systeme_events(url)} >= {"CONTACT_CREATED", "CONTACT_TAG_ADDED"}

        await wait_for(fired_back, timeout=30)
        await post_stripe(url, stripe_refund("lin.chen@gmail.com"))  # its rule removes the tag

        async def removed() -> bool:
            return "CONTACT_TAG_REMOVED" in {e["type"] for e in await systeme_events(url)}

        await wait_for(removed, timeout=30)
        stored = {e["type"]: e for e in await systeme_events(url)}
    # Stored means verified: the signature is the webhook's secret over the exact bytes sent.
    assert stored["CONTACT_CREATED"]["payload"]["contact"]["email"] == "lin.chen@gmail.com"
    assert stored["CONTACT_TAG_ADDED"]["payload"]["tag"]["name"] == "Masterclass buyer"
    assert stored["CONTACT_TAG_REMOVED"]["payload"]["tag"]["name"] == "Masterclass buyer"
    assert stored["CONTACT_TAG_REMOVED"]["payload"]["contact"]["tags"] == []
    hook = f"{url}/hooks/systeme"
    assert ("CONTACT_CREATED", hook, 202) in sim.simulator.callbacks.deliveries
    assert ("CONTACT_TAG_ADDED", hook, 202) in sim.simulator.callbacks.deliveries


async def test_a_delivery_that_fails_is_recorded_and_the_api_answers_as_ever(sim):
    headers = {"X-API-Key": SIM_KEY}
    body = {"name": "gone", "url": "http://127.0.0.1:9/hooks/systeme", "secret": "s3cret",
            "subscriptions": [{"event": "CONTACT_CREATED", "schemaVersion": 2}]}  # fmt: skip
    assert httpx.post(f"{sim.url}/api/webhooks", json=body, headers=headers).status_code == 201
    created = httpx.post(f"{sim.url}/api/contacts", json={"email": "noor@gmail.com"}, headers=headers)
    assert created.status_code == 201
    await wait_for(lambda: bool(sim.simulator.callbacks.deliveries))
    assert sim.simulator.callbacks.deliveries == [
        ("CONTACT_CREATED", "http://127.0.0.1:9/hooks/systeme", "ConnectError")
    ]


# A rule that answers a tag with another: with the account firing CONTACT_TAG_ADDED for our own tags, a loop. (A
# rule toggling one tag ends by itself: the account's second body for it is byte-identical, a duplicate.)
ECHO = (
    RULES
    + """
  - id: echo
    on: systeme/CONTACT_TAG_ADDED
    if: event.tag.name != "Masterclass buyer"
    contact: { email: "{{ event.contact.email }}" }
    actions: [ { tag: "{{ event.tag.name }}+" } ]
"""
)


async def test_a_loop_through_the_accounts_own_webhooks_is_held_past_the_fire_limit(
    make_settings, database_url, sim, tmp_path
):
    folder = tmp_path / "flow"
    folder.mkdir()
    rules = str(write_rules(folder, ECHO))
    with running(make_settings(database_url=database_url, rules_file=rules, rule_fires_per_contact=3)) as url:
        done = run_cli("connect", "--url", url, cwd=folder, SYSTEME_API_KEY=SIM_KEY, SYSTEME_API_URL=sim.url)
        assert done.returncode == 0, done.stderr
        # The seller tags a contact in Systeme.io: the account tells us, and the rule takes it from there.
        api = {"X-API-Key": SIM_KEY}
        contact = httpx.post(f"{sim.url}/api/contacts", json={"email": "echo@gmail.com"}, headers=api).json()
        tag = httpx.post(f"{sim.url}/api/tags", json={"name": "Echo"}, headers=api).json()
        httpx.post(f"{sim.url}/api/contacts/{contact['id']}/tags", json={"tagId": tag["id"]}, headers=api)

        async def held() -> list[dict]:
            async with operator(url) as http:
                answer = await http.get("/v1/actions", params={"status": "awaiting_approval"})
            return list(answer.json()["items"])

        async def any_held() -> bool:
            return bool(await held())

        await wait_for(any_held, timeout=60)
        (action,) = await held()
    assert action["rule_id"] == "echo" and action["params"]["name"] == "Echo++++"
    assert "RULE_FIRES_PER_CONTACT=3" in action["note"] and "echo@gmail.com" in action["note"]
    # The three fires within the limit ran; the fourth waits for an operator.
    assert sim.tag_names("echo@gmail.com") == ["Echo", "Echo+", "Echo++", "Echo+++"]
