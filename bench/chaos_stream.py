"""The chaos run's traffic: buyers' purchases and refunds from two shops on two accounts, form posts, and senders
that behave like providers (an event not answered 2xx is sent again later, to any replica; some events answered
2xx are delivered again anyway)."""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import FORM_TOKEN, standard_headers, stripe_checkout, stripe_headers, stripe_refund


@dataclass
class Delivery:
    """One provider event and how to send it; `key` is the (source, provider id) the service stores it under."""

    source: str
    provider_id: str
    kind: str  # purchase, refund or form
    email: str
    account: str  # the simulator account its actions go to: "default" or "b"
    occurred: float  # the event's own time (what ordering by event time means)
    send_at: float  # seconds after the stream starts
    body: bytes
    redeliver: bool = False  # sent once more after its 2xx, as providers sometimes do
    attempts: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.provider_id

    def request(self) -> tuple[str, dict[str, str]]:
        """The path and headers of an attempt, signed afresh as the provider does for each attempt."""
        if self.source == "stripe":
            return "/hooks/stripe", stripe_headers(self.body)
        if self.source == "shop":
            # The event's own timestamp: Standard Webhooks' time is the event time here (ordering reads it).
            msg = self.provider_id
            return "/hooks/shop", standard_headers(self.body, msg_id=msg, timestamp=int(self.occurred))
        # Each poster from their own address, through the proxy the replicas sit behind (the cluster trusts
        # loopback as that proxy): all from one address, the per-client limit of unsigned sources would answer 429.
        address = zlib.crc32(self.email.encode())
        forwarded = f"10.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"
        return f"/hooks/form?token={FORM_TOKEN}", {"Content-Type": "application/json", "X-Forwarded-For": forwarded}


def _shop(kind: str, email: str, occurred: float) -> dict[str, Any]:
    return {"type": f"order.{kind}", "timestamp": int(occurred), "data": {"email": email, "product": "course"}}


def plan(
    events: int, seconds: float, *, start: float, seed: int = 21, early_refunds: bool = True, tag: str = ""
) -> list[Delivery]:
    """About `events` deliveries spread over `seconds`: per buyer a purchase (Stripe on account `default` or the
    shop on account `b`), for 30% of them a refund 3 to 20 s later (a quarter of those, with `early_refunds`,
    delivered 2 to 8 s *before* their purchase, though they occurred after it), and form posts (15% of events,
    half of them by buyers). One delivery in ten is redelivered after its 2xx."""
    rng = random.Random(seed)
    out: list[Delivery] = []
    buyers: list[str] = []
    n = 0
    while len(out) < events:
        n += 1
        if rng.random() < 0.15:
            email = rng.choice(buyers) if buyers and rng.random() < 0.5 else f"reader{n}{tag}@yopmail.com"
            at = rng.uniform(0, seconds)
            body = {"email": email, "submission_id": f"s{n}{tag}"}
            out.append(Delivery("form", f"submission_id:s{n}{tag}", "form", email, "default", start + at, at,
                                json.dumps(body).encode()))  # fmt: skip
            continue
        email = f"buyer{n}{tag}@yopmail.com"
        buyers.append(email)
        source, account = ("stripe", "default") if rng.random() < 0.6 else ("shop", "b")
        bought = rng.uniform(0, seconds * 0.85)
        sends = [("purchase", bought, bought)]  # (kind, event time, send time), seconds after the start
        if rng.random() < 0.3:
            if early_refunds and rng.random() < 0.25:
                # Occurred 2 s after its purchase, delivered first: the purchase arrives 2 to 8 s later.
                sends = [("purchase", bought, bought + rng.uniform(2, 8)), ("refund", bought + 2, bought)]
            else:
                later = bought + rng.uniform(3, 20)
                sends.append(("refund", later, later))
        for kind, occurred, send in sends:
            ident = f"evt_{n}{tag}_{kind}"
            if source == "stripe":
                event = stripe_checkout(email, event_id=ident) if kind == "purchase" else stripe_refund(email)
                event["id"], event["created"] = ident, int(start + occurred)
            else:
                ident, event = f"msg_{n}{tag}_{kind}", _shop("paid" if kind == "purchase" else "refunded", email, 0)
                event["timestamp"] = int(start + occurred)
            out.append(Delivery(source, ident, kind, email, account, int(start + occurred), send,
                                json.dumps(event).encode(), redeliver=rng.random() < 0.1))  # fmt: skip
    return out


@dataclass
class Sent:
    """What the senders saw: the first 2xx of each event, every answer's status, transport errors."""

    acked: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    attempts: int = 0
    last_ack: float = 0.0


async def send(
    deliveries: list[Delivery],
    apis: list[str],
    *,
    started: float,
    senders: int = 8,
    give_up: float = 900.0,
    hold: Callable[[Delivery], Awaitable[bool]] | None = None,
) -> Sent:
    """Deliver everything on its schedule (seconds after `started`, a monotonic time) to a random replica. Not
    2xx (or no answer): again 1, 2, 4... at most 8 s later, to any replica, for up to `give_up` seconds. A
    delivery that `hold` says must wait is looked at again 1 s later."""
    sent = Sent()
    rng = random.Random(7)
    queue: list[tuple[float, int, Delivery, bool]] = []
    for n, d in enumerate(deliveries):
        heapq.heappush(queue, (started + d.send_at, n, d, False))
    counter = len(deliveries)
    in_flight = 0
    deadline = started + max(d.send_at for d in deliveries) + give_up

    async def one(http: httpx.AsyncClient) -> None:
        nonlocal counter, in_flight
        while queue or in_flight:
            if not queue or queue[0][0] > time.monotonic():
                await asyncio.sleep(0.02)
                continue
            _, _, d, again = heapq.heappop(queue)
            in_flight += 1
            try:
                if hold is not None and not again and await hold(d):
                    counter += 1
                    heapq.heappush(queue, (time.monotonic() + 1.0, counter, d, again))
                    continue
                path, headers = d.request()
                d.attempts += 1
                sent.attempts += 1
                try:
                    answer = await http.post(rng.choice(apis) + path, content=d.body, headers=headers)
                    status = answer.status_code
                except httpx.HTTPError:
                    status = 0
                    sent.errors += 1
                if status:
                    sent.statuses[status] += 1
                counter += 1
                if 200 <= status < 300:
                    if d.key not in sent.acked:
                        sent.acked[d.key] = d
                        sent.last_ack = time.monotonic()
                    if d.redeliver and not again:
                        heapq.heappush(queue, (time.monotonic() + rng.uniform(1, 10), counter, d, True))
                elif time.monotonic() < deadline:
                    wait = min(8.0, 2.0 ** min(d.attempts - 1, 3)) * rng.uniform(0.5, 1.0)
                    heapq.heappush(queue, (time.monotonic() + wait, counter, d, again))
            finally:
                in_flight -= 1

    async with httpx.AsyncClient(timeout=15) as http:
        await asyncio.gather(*[one(http) for _ in range(senders)])
    return sent
