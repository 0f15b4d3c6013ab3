"""`check --live` per account: keys, Maton connections, references and contact fields, against simulators."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.simulator import Simulator
from tests.clitools import run_cli
from tests.conftest import SIM_KEY
from tests.servers import ServerThread

TWO_ACCOUNTS = """version: 1
accounts:
  school:   {{ api_key: "school-key", api_url: "{school}" }}
  coaching: {{ api_key: "{coaching_key}", api_url: "{coaching}" }}
sources:
  shop: {{ type: stripe, secret: whsec_0123456789, account: school }}
rules:
  - id: course-sale
    on: shop/checkout.session.completed
    contact: {{ email: "{{{{ event.email }}}}", fields: {{ phone_number: "{{{{ event.phone }}}}" }} }}
    actions: [ {{ enroll: {{ course: 101 }} }}, {{ add_to_community: {{ community: Alumni }} }} ]
  - id: coaching-call
    account: coaching
    on: shop/checkout.session.completed
    contact: {{ email: "{{{{ event.email }}}}" }}
    actions: [ {{ enroll: {{ course: 999 }} }} ]
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "rules.yaml"
    path.write_text(text)
    return path


def check(folder: Path, *args: str, **env: str):
    return run_cli("check", "--live", *args, cwd=folder, **env)


def test_each_account_is_checked_with_its_own_key_and_its_own_rules(tmp_path):
    school, coaching = Simulator(api_key="school-key"), Simulator(api_key="coaching-key")
    school.seed(courses=[{"id": 101, "name": "Masterclass"}], communities=[{"id": 7, "name": "Insiders"}])
    coaching.seed(courses=[{"id": 999, "name": "Coaching"}])
    with ServerThread(school.app) as school_server, ServerThread(coaching.app) as coaching_server:
        urls = {"school": school_server.url, "coaching": coaching_server.url}
        write(tmp_path, TWO_ACCOUNTS.format(coaching_key="revoked-key", **urls))
        done = check(tmp_path)
        assert done.returncode == 1
        assert done.stdout.splitlines() == [
            "rules.yaml:4:3: account 'coaching': the account refuses its `api_key`: GET /api/tags answered 401: "
            "Invalid API key",
            "rules.yaml:8:5: rule 'course-sale': community 'Alumni' does not exist in account 'school'",
        ]
        # One GET says the key is refused; nothing else is asked of that account.
        assert [(c["method"], c["path"], c["status"]) for c in coaching.account.calls] == [("GET", "/api/tags", 401)]
        assert {c["method"] for c in school.account.calls} == {"GET"}

        write(tmp_path, TWO_ACCOUNTS.format(coaching_key="coaching-key", **urls).replace("Alumni", "Insiders"))
        fixed = check(tmp_path)
        assert (fixed.returncode, fixed.stdout) == (0, "2 rules, 1 source: OK\n")
        # course 999 exists in coaching only: each rule was judged against its own account.
        assert any(c["path"] == "/api/school/courses" for c in coaching.account.calls)


def test_a_connection_that_is_not_active_is_named_by_asking_maton(sim, tmp_path):
    pending = sim.simulator.connections.create("systeme", sim.url)
    ident = pending["connection_id"]
    write(
        tmp_path,
        f"version: 1\naccounts:\n  school: {{ connection: {ident} }}\nsources:\n  f: {{ type: form, token: t0k3n }}\n"
        "rules:\n  - { id: r, on: f, account: school, contact: { email: a@yopmail.com }, actions: [ { enroll: { course: 101 } } ] }\n",
    )
    env = {"MATON_API_KEY": SIM_KEY, "MATON_CONTROL_URL": sim.url, "SYSTEME_API_URL": sim.url}
    done = check(tmp_path, **env)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"rules.yaml:3:3: account 'school': Maton connection {ident} is PENDING, not ACTIVE: "
        f"open {pending['url']} to finish connecting it"
    ]
    # Only the default account's key was tried (MATON_API_KEY alone: Maton's oldest connection); not school's,
    # which the proxy would refuse.
    assert [(c["path"], c["status"]) for c in sim.account.calls] == [("/api/tags", 200)]

    httpx.get(pending["url"])  # the OAuth is finished
    assert check(tmp_path, **env).returncode == 0
    assert [c["path"] for c in sim.account.calls[1:]] == ["/api/tags", "/api/tags", "/api/school/courses"]

    sim.simulator.connections.items.clear()
    gone = check(tmp_path, **env)
    assert f"account 'school': Maton connection {ident} does not exist" in gone.stdout
    refused = check(tmp_path, **{**env, "MATON_API_KEY": "revoked"})
    assert "account 'school': Maton refuses MATON_API_KEY: GET /connections/" in refused.stdout
    assert "answered 401: Invalid API key" in refused.stdout


def test_several_active_connections_and_none_named_is_an_error_listing_them(sim, tmp_path):
    control = sim.simulator.connections
    ids = [control.create("systeme", sim.url)["connection_id"] for _ in range(2)]
    for ident in ids:
        control.set_status(ident, "ACTIVE")
    write(tmp_path, "version: 1\nsources:\n  f: { type: form, token: t0k3n }\n")
    env = {"MATON_API_KEY": SIM_KEY, "MATON_CONTROL_URL": sim.url, "SYSTEME_API_URL": sim.url}
    done = check(tmp_path, **env)
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()
    assert "account 'default': MATON_API_KEY has 2 ACTIVE Systeme.io connections and none is named" in line
    assert all(ident in line for ident in ids) and "MATON_CONNECTION" in line
    assert sim.account.calls == []  # not even the key check: it would go to whichever account Maton picks
    named = check(tmp_path, **env, MATON_CONNECTION=ids[0])
    assert named.returncode == 0, named.stdout


def test_the_proxy_refuses_a_connection_that_is_not_active_and_the_check_says_so_in_its_words(sim, tmp_path):
    # Without a control API to ask (Maton unreachable), the one GET still names the refusal.
    ident = sim.simulator.connections.create("systeme", sim.url)["connection_id"]
    write(
        tmp_path,
        f"version: 1\naccounts:\n  school: {{ connection: {ident} }}\nsources:\n  f: {{ type: form, token: t0k3n }}\n",
    )
    env = {"MATON_API_KEY": SIM_KEY, "MATON_CONTROL_URL": "http://127.0.0.1:9", "SYSTEME_API_URL": sim.url}
    lines = check(tmp_path, **env).stdout.splitlines()
    assert len(lines) == 2
    assert "account 'school': warning: Maton could not say whether connection" in lines[0]
    assert lines[1].endswith(
        f"account 'school': the account refuses its `connection` (with MATON_API_KEY): GET /api/tags answered 400: "
        f"Connection {ident} is not active "
        "(status PENDING)"
    )


FIELDS = """version: 1
sources:
  f: { type: form, token: t0k3n }
rules:
  - id: signup
    on: f
    contact: { email: "{{ event.email }}", fields: { phone_number: "{{ event.phone }}", shoe_size: "{{ event.size }}" } }
    actions:
      - update_contact: { fields: { favourite_colour: "{{ event.colour }}", shoe_size: "{{ event.size }}" } }
  - id: bad-slug
    on: f
    contact: { email: "{{ event.email }}", fields: { shoe-size: "{{ event.size }}" } }
    actions: [ { tag: Lead } ]
"""


def test_missing_contact_fields_are_reported_then_created_with_create_fields(sim, tmp_path):
    sim.account.create_tag({"name": "Lead"})
    write(tmp_path, FIELDS)
    env = {"SYSTEME_API_KEY": SIM_KEY, "SYSTEME_API_URL": sim.url}
    done = check(tmp_path, **env)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "rules.yaml:5:5: rule 'signup': contact field 'shoe_size' does not exist in the connected account "
        "(`check --live --create-fields` creates it)",
        "rules.yaml:5:5: rule 'signup': contact field 'favourite_colour' does not exist in the connected account "
        "(`check --live --create-fields` creates it)",
        "rules.yaml:10:5: rule 'bad-slug': contact field 'shoe-size' cannot exist in Systeme.io: a slug is letters, "
        "digits and _ only",
    ]
    assert {c["method"] for c in sim.account.calls} == {"GET"}  # without --create-fields, reads only
    assert "shoe_size" not in sim.account.fields

    created = check(tmp_path, "--create-fields", **env)
    assert created.returncode == 1  # the bad slug is still there
    assert created.stdout.splitlines()[:2] == [
        "created contact field shoe_size ('Shoe size') in account 'default'",
        "created contact field favourite_colour ('Favourite colour') in account 'default'",
    ]
    assert sim.account.fields["shoe_size"] == "Shoe size"
    posts = [c for c in sim.account.calls if c["method"] == "POST"]
    assert [c["path"] for c in posts] == ["/api/contact_fields"] * 2  # each missing field once, nothing else

    write(tmp_path, FIELDS.replace("shoe-size", "shoe_size"))
    again = check(tmp_path, "--create-fields", **env)
    assert (again.returncode, again.stdout) == (0, "2 rules, 1 source: OK\n")
    assert len([c for c in sim.account.calls if c["method"] == "POST"]) == 2  # nothing more to create


def test_create_fields_needs_live_and_live_needs_a_key(tmp_path):
    write(tmp_path, FIELDS)
    alone = run_cli("check", "--create-fields", cwd=tmp_path)
    assert alone.returncode == 2 and "--create-fields goes with --live" in alone.stderr
    dry = check(tmp_path)
    assert dry.returncode == 2 and "--live needs MATON_API_KEY or SYSTEME_API_KEY" in dry.stderr


def test_a_wrong_settings_key_names_the_setting_and_no_rules_file_position(sim, tmp_path):
    write(tmp_path, FIELDS.replace("shoe-size", "shoe_size"))
    (tmp_path / ".env").write_text(f"SYSTEME_API_KEY=not-the-key\nSYSTEME_API_URL={sim.url}\n")
    done = check(tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "account 'default': the account refuses SYSTEME_API_KEY (set in .env): GET /api/tags answered 401: "
        "Invalid API key"
    ]


TAGS = """version: 1
sources:
  f: { type: form, token: t0k3n }
rules:
  - id: vip
    on: f
    contact: { email: "{{ event.email }}" }
    actions: [ { tag: VIP }, { untag: " lead " }, { tag: Newsletter } ]
"""


def test_tags_that_match_without_case_are_reported_as_ambiguous(sim, tmp_path):
    for name in ("VIP", "vip", "Lead", "LEAD", "NEWSLETTER"):
        sim.account.create_tag({"name": name})
    write(tmp_path, TAGS)
    done = check(tmp_path, SYSTEME_API_KEY=SIM_KEY, SYSTEME_API_URL=sim.url)
    assert done.returncode == 0, done.stdout  # warnings: the rules work, but the seller should know
    lines = [line for line in done.stdout.splitlines() if "warning" in line or "notice" in line]
    assert lines == [
        "rules.yaml:5:5: rule 'vip': warning: tags 'VIP' and 'vip' all exist: names match without case, so 'VIP' "
        "is used; rename or delete the others",
        "rules.yaml:5:5: rule 'vip': warning: tags 'Lead' and 'LEAD' all exist: names match without case, so "
        "'Lead' is used; rename or delete the others",  # the first in the API's order, as the runner does
    ]  # `Newsletter` is `NEWSLETTER`: it exists, so no "created on first use" notice
