"""The simulator's Systeme.io webhooks for the API's own writes: a contact created, a tag added or removed.

The real account fires its webhooks (and the seller's automations) for writes made through the API like any other
(../shared/systeme/webhooks.md), so a rule on `CONTACT_TAG_ADDED` sees the tags systeme-flow adds itself. Each
registered, active webhook subscribed to the event gets a delivery signed as Systeme.io signs them: the lowercase
hex HMAC-SHA256 of the raw body with the webhook's secret in `X-Webhook-Signature`, the event in `X-Webhook-Event`,
a fresh `X-Webhook-Message-Id`, a PHP-written compact JSON body (`/` as `\\/`, non-ASCII as `\\uXXXX`).

Delivered asynchronously, after the API's answer, and best-effort as Systeme.io documents no retries: a delivery
that fails is recorded in `deliveries` and not tried again. `CONTACT_TAG_REMOVED` is sent with the contact nested
once, as it has been seen (the documentation nests it twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from app.simulator.state import Account

log = logging.getLogger(__name__)
_TAGS = re.compile(r"^/api/contacts/(?P<contact>\d+)/tags(?:/(?P<tag>[^/]+))?$")
TIMEOUT = 5.0


def php_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


class Callbacks:
    """Watches the simulator's answers and sends the webhooks the account's writes fire."""

    def __init__(self) -> None:
        # (event, url, HTTP status or the error's name), in the order the deliveries ended.
        self.deliveries: list[tuple[str, str, int | str]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def observe(self, request: Request, response: Response, acc: Account) -> None:
        """After a successful answer: fire what that write fires in a real account; never fails the answer."""
        try:
            await self._observe(request, response, acc)
        except Exception:
            log.exception("the simulator could not fire the webhooks of %s %s", request.method, request.url.path)

    async def _observe(self, request: Request, response: Response, acc: Account) -> None:
        if not 200 <= response.status_code < 300 or not acc.webhooks:
            return
        path, method = request.url.path, request.method
        if method == "POST" and path == "/api/contacts":
            self.fire(acc, "CONTACT_CREATED", {"contact": json.loads(bytes(response.body))})
            return
        found = _TAGS.match(path)
        if found is None or int(found["contact"]) not in acc.contacts:
            return
        contact = acc.contacts[int(found["contact"])]
        if method == "POST" and found["tag"] is None:
            tag_id = json.loads(await request.body()).get("tagId")  # the handler read it: Starlette kept it
            tag = {"id": tag_id, "name": acc.tags.get(tag_id, {}).get("name")}
            self.fire(acc, "CONTACT_TAG_ADDED", {"contact": contact, "tag": tag})
        elif method == "DELETE" and found["tag"] is not None:
            tag_id = int(found["tag"]) if found["tag"].isdigit() else 0  # a removal answered 204 named a real one
            tag = {"id": tag_id, "name": acc.tags.get(tag_id, {}).get("name")}
            self.fire(acc, "CONTACT_TAG_REMOVED", {"contact": contact, "tag": tag})

    def fire(self, acc: Account, event: str, payload: dict[str, Any]) -> None:
        body = php_json(payload)
        for hook in list(acc.webhooks.values()):
            subscription = next(
                (s for s in hook["subscriptions"] if s["event"] == event and not s.get("disabledAt")), None
            )
            if not hook.get("active", True) or subscription is None:
                continue
            now = datetime.now(UTC).isoformat(timespec="seconds")
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "SystemeIO-Webhook",
                "X-Webhook-Event": event,
                "X-Webhook-Signature": hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest(),
                "X-Webhook-Message-Id": str(uuid.uuid4()),
                "X-Webhook-Event-Timestamp": now,
                "X-Webhook-Delivery-Attempt-Id": str(uuid.uuid4()),
                "X-Webhook-Delivery-Attempt-Timestamp": now,
                "X-Webhook-Subscription-Id": str(subscription["id"]),
                "X-Webhook-Schema-Version": str(subscription.get("schemaVersion") or 2),
            }
            task = asyncio.get_running_loop().create_task(self._deliver(event, hook["url"], body, headers))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                answer = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.deliveries.append((event, url, type(exc).__name__))
            return
        self.deliveries.append((event, url, answer.status_code))
