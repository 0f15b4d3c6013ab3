"""Renew the dashboard's pictures in docs/images/: the home page headed by unserved payments, the sales page and a
contact's page, taken with Playwright and Debian's Chromium against the service and the simulator, both on
loopback, with a month of sample sales.

    .venv/bin/python -m scripts.dashboard_pictures [--out docs/images] [--chromium /usr/bin/chromium]

Nothing leaves the machine: the service talks to the simulator only, its database is a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from app.config import Settings
from app.main import create_app
from app.server import server_options
from app.simulator import Simulator
from app.store.db import create_engine
from app.store.migrate import upgrade_async
from app.store.models import actions, events
from bench.common import InThread
from tests.factories import stripe_headers

SECRET = "whsec_sample_pictures"
TOKEN = "pictures-operator-token"
KEY = "sample-pictures-key"
RULES = f"""
version: 1
sources:
  stripe: {{ type: stripe, secret: "{SECRET}" }}
rules:
  - id: masterclass
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid" and event.data.object.metadata.product == "masterclass"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - tag: Masterclass buyer
      - enroll: {{ course: 101, access: full_access }}
      - tag: Week one done
        after: 7d
  - id: bootcamp
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid" and event.data.object.metadata.product == "bootcamp"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - enroll: {{ course: 102, access: full_access }}
  - id: workshop
    on: stripe/checkout.session.completed
    if: event.data.object.payment_status == "paid" and event.data.object.metadata.product == "workshop"
    contact: {{ email: "{{{{ event.data.object.customer_details.email }}}}" }}
    actions:
      - tag: Workshop guest
"""
NAMES = "ana bob cy dee eli fay gus hal ivy jo kai lea max nia oli pia quin rae sam tia uma vic wes xia yan zoe".split()
# (product, amount in cents, currency)
PRODUCTS = [("masterclass", 19900, "eur"), ("workshop", 4900, "usd"), ("masterclass", 19900, "eur")]


def checkout(email: str, product: str, cents: int, currency: str) -> dict[str, Any]:
    session = {
        "id": f"cs_{uuid.uuid4().hex[:16]}",
        "object": "checkout.session",
        "amount_total": cents,
        "currency": currency,
        "customer_details": {"email": email, "name": email.split("@")[0].title()},
        "metadata": {"product": product},
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": f"pi_{uuid.uuid4().hex[:16]}",
    }
    return {"id": f"evt_{uuid.uuid4().hex[:24]}", "type": "checkout.session.completed", "data": {"object": session}}


def refund(email: str, cents: int) -> dict[str, Any]:
    charge = {"object": "charge", "amount_refunded": cents, "currency": "eur", "billing_details": {"email": email}}
    return {"id": f"evt_{uuid.uuid4().hex[:24]}", "type": "charge.refunded", "data": {"object": charge}}


def post(url: str, event: dict[str, Any]) -> str:
    body = json.dumps(event).encode()
    answer = httpx.post(f"{url}/hooks/stripe", content=body, headers=stripe_headers(body, SECRET))
    answer.raise_for_status()
    return str(answer.json()["event_id"])


def settle(url: str) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = httpx.get(f"{url}/v1/payments", headers=bearer).json()["items"]
        if items and all(p["status"] != "pending" for p in items):
            return
        time.sleep(0.2)
    raise RuntimeError("the sample payments did not settle within a minute")


async def spread(database_url: str, ages: dict[str, float], waits: dict[str, float]) -> None:
    """Move each sample event back by its age (its actions with it), and its access steps by a plausible wait."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for event_id, age in ages.items():
                back = timedelta(seconds=age)
                row = (await conn.execute(sa.select(events.c.received_at).where(events.c.id == event_id))).one()
                await conn.execute(events.update().where(events.c.id == event_id).values(received_at=row[0] - back))
                for action in await conn.execute(sa.select(actions).where(actions.c.event_id == event_id)):
                    later = timedelta(seconds=waits.get(event_id, 0.0)) if action.status == "succeeded" else timedelta()
                    await conn.execute(
                        actions.update()
                        .where(actions.c.id == action.id)
                        .values(created_at=action.created_at - back, updated_at=action.updated_at - back + later)
                    )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(22)
    folder = Path(tempfile.mkdtemp(prefix="sf-pictures-"))
    (folder / "rules.yaml").write_text(RULES)
    database_url = f"sqlite+aiosqlite:///{folder}/pictures.db"
    asyncio.run(upgrade_async(database_url))
    simulator = Simulator(api_key=KEY)
    simulator.seed(courses=[{"id": 101, "name": "Masterclass"}, {"id": 102, "name": "Bootcamp"}])
    simulator.account.forbidden.add("/api/school/courses/102")  # the account refuses the bootcamp's enrolment
    with InThread(simulator.app) as sim:
        settings = Settings(
            _env_file=None,
            database_url=database_url,
            rules_file=str(folder / "rules.yaml"),
            systeme_api_key=KEY,
            systeme_api_url=sim.url,
            admin_token=f"dana={TOKEN}",
            redis_url=None,
            maton_api_key=None,
        )
        with InThread(create_app(settings), server_options(settings)) as service:
            ages: dict[str, float] = {}
            waits: dict[str, float] = {}
            for i, name in enumerate(NAMES):
                product, cents, currency = PRODUCTS[i % len(PRODUCTS)]
                event_id = post(service.url, checkout(f"{name}@yopmail.com", product, cents, currency))
                ages[event_id] = rng.uniform(1, 29) * 86400
                waits[event_id] = rng.lognormvariate(2.5, 1.4)  # seconds: most within a minute, a few slow
            settle(service.url)
            ages[post(service.url, refund("bob@yopmail.com", 4900))] = 2 * 86400
            ages[post(service.url, checkout("ivy.b@yopmail.com", "bootcamp", 49900, "eur"))] = 3 * 3600
            ages[post(service.url, checkout("noor@yopmail.com", "ebook", 2900, "eur"))] = 40 * 60
            refunded = post(service.url, checkout("ada@yopmail.com", "masterclass", 19900, "eur"))
            settle(service.url)
            ages[post(service.url, refund("ada@yopmail.com", 19900))] = 0
            ages[refunded] = 600
            asyncio.run(spread(database_url, ages, waits))
            shoot(service.url, args.chromium, out)
    sys.stdout.write(f"pictures written to {out}\n")


def shoot(url: str, chromium: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.goto(f"{url}/ui/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#unserved")
        page.screenshot(path=str(out / "dashboard-home.png"))
        page.goto(f"{url}/ui/sales")
        page.screenshot(path=str(out / "dashboard-sales.png"), full_page=True)
        page.goto(f"{url}/ui/contacts/ada%40yopmail.com")
        page.screenshot(path=str(out / "dashboard-contact.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
