"""Systeme.io's automation and workflow "Call a webhook" step, in every shape it arrives in."""

from __future__ import annotations

import json

import httpx
import pytest

from app.errors import BadRequest, RulesError
from app.rules.loader import parse_rules
from app.rules.schema import SourceConfig
from app.sources import Delivery, parse_delivery
from tests.conftest import planned, running, wait_for
from tests.factories import write_rules
from tests.flows import count_rows

TOKEN = "automation-token-for-tests-0123456789"


def rules(allow: str = "") -> str:
    return f"""
version: 1
sources:
  automation: {{ type: systeme-automation, token: "{TOKEN}"{allow} }}
rules:
  - id: workflow-sale
    on: automation/customer.sale.completed
    contact:
      email: "{{{{ event.data.contact.email }}}}"
      first_name: "{{{{ event.data.contact.fields.first_name }}}}"
    actions:
      - tag: Workflow buyer
"""


def sale(fields: object) -> dict:
    contact = {"email": "lin@yopmail.com", "fields": fields}
    return {"type": "customer.sale.completed", "data": {"contact": contact}, "created_at": "2026-11-30T10:00:00Z"}


def parse(body: object) -> dict:
    config = SourceConfig(type="systeme-automation", token=TOKEN)
    delivery = Delivery(headers={"content-type": "application/json"}, body=json.dumps(body).encode(), query={})
    event = parse_delivery(config, delivery, 0.0, verify=False)
    return {"type": event.type, "payload": event.payload}


def test_an_array_around_the_event_and_fields_as_a_list_read_as_the_plain_shape():
    plain = parse(sale({"first_name": "Lin"}))
    wrapped = parse([sale([{"slug": "first_name", "value": "Lin"}])])
    assert wrapped == plain
    assert plain["type"] == "customer.sale.completed"
    assert plain["payload"]["data"]["contact"]["fields"] == {"first_name": "Lin"}


def test_a_list_of_another_shape_is_kept_and_two_events_in_one_array_are_refused():
    odd = parse(sale(["first_name", "Lin"]))
    assert odd["payload"]["data"]["contact"]["fields"] == ["first_name", "Lin"]
    config = SourceConfig(type="systeme-automation", token=TOKEN)
    two = json.dumps([sale({}), sale({})]).encode()
    with pytest.raises(BadRequest, match="exactly one object"):
        delivery = Delivery(headers={"content-type": "application/json"}, body=two, query={"token": TOKEN})
        parse_delivery(config, delivery, 0.0)


def test_allow_ips_must_be_addresses_or_networks():
    with pytest.raises(RulesError, match="not an IP address or network"):
        parse_rules(rules(', allow_ips: ["203.0.113.0/24", "systeme.io"]'), path="rules.yaml", env={})


async def test_an_array_wrapped_workflow_webhook_runs_its_rule(make_settings, database_url, tmp_path, sim):
    settings = make_settings(database_url=database_url)
    write_rules(tmp_path, rules())
    body = json.dumps([sale([{"slug": "first_name", "value": "Lin"}])]).encode()
    with running(settings) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.post(
                "/hooks/automation", content=body, params={"token": TOKEN}, headers={"content-type": "application/json"}
            )
        assert answer.status_code == 202, answer.text

        async def done() -> bool:
            actions = (await planned(url, answer.json()["event_id"]))["actions"]
            return bool(actions) and all(a["status"] == "succeeded" for a in actions)

        await wait_for(done)
    assert sim.tag_names("lin@yopmail.com") == ["Workflow buyer"]
    assert {"slug": "first_name", "value": "Lin", "fieldName": "First name"} in sim.contact("lin@yopmail.com")["fields"]


async def test_allow_ips_refuses_other_senders_before_the_body_and_stores_nothing(make_settings, sqlite_url, tmp_path):
    body = json.dumps(sale({})).encode()
    headers = {"content-type": "application/json"}
    answers = []
    for allow in (', allow_ips: ["203.0.113.0/24"]', ', allow_ips: ["127.0.0.1"]'):
        settings = make_settings(database_url=sqlite_url, systeme_api_key=None)
        write_rules(tmp_path, rules(allow))
        with running(settings) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                answers.append(
                    await http.post("/hooks/automation", content=body, params={"token": TOKEN}, headers=headers)
                )
        if not answers[-1].is_success:
            assert (await count_rows(sqlite_url))[0] == 0
    refused, taken = answers
    assert refused.status_code == 403 and "allow_ips" in refused.json()["error"]
    assert taken.status_code == 202, taken.text
