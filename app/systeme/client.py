"""The Systeme.io API client: one shared httpx.AsyncClient per process, problem documents turned into errors."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from app.store.statuses import Priority
from app.systeme.errors import AccountUnusable, Forbidden, PermanentApiError, TransientApiError
from app.systeme.names import MemoryNames, NameCache
from app.systeme.quota import MAX_WAIT_SECONDS, MemoryQuota, Quota

log = logging.getLogger(__name__)
_BODY_LIMIT = 4000  # characters of an answer kept in the call log
MIN_LIMIT = 10  # the documented minimum page size, which every list accepts


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def problem(response: httpx.Response) -> str:
    """The human part of a problem document: detail, then each violation."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    # Problem documents say `detail`; the Maton proxy and some gateways say `error` or `message`.
    parts = [str(body.get("detail") or body.get("title") or body.get("message") or body.get("error") or "")]
    for violation in body.get("violations") or []:
        if isinstance(violation, dict):
            said = f"{violation.get('propertyPath', '')}: {violation.get('message', '')}"
            if said not in parts[0]:  # API Platform's detail often is the violations, joined
                parts.append(said)
    return "; ".join(p for p in parts if p) or response.reason_phrase


# A 500 from the Maton proxy that says the upstream authorisation is gone: waiting will not fix it.
_EXPIRED = re.compile(r"authori[sz]|reconnect|re-connect|expired|revoked|oauth", re.IGNORECASE)


def account_refused(response: httpx.Response, *, maton: bool) -> bool:
    """Whether an answer says the account itself is unusable, rather than this one request.

    A 403 is not such an answer: Systeme.io gives it for one record or feature the key may not touch (a course of
    another plan, a community out of reach); the caller probes the account before holding it (`Forbidden`).
    """
    status = response.status_code
    if status == 401:
        return True
    if maton and status == 400 and "connection" in response.text.lower():
        return True  # Maton: no connection for this app (or the one named does not exist)
    return status == 500 and bool(_EXPIRED.search(response.text[:2000]))


class SystemeClient:
    """Owns the connection pool and the process-wide caches; hand out a `session()` per action run."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        quota: Quota | None = None,
        names: NameCache | None = None,
        dry_run: bool = False,
        account: str = "default",
        maton: bool = False,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={**headers, "Accept": "application/json", "User-Agent": "systeme-flow"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )
        self.quota: Quota = quota or MemoryQuota()
        self.names: NameCache = names or MemoryNames()
        # No API key: every action is recorded as skipped, decided here when it runs, never when it is planned.
        self.dry_run = dry_run
        self.account = account
        self.maton = maton

    def session(
        self, *, priority: Priority = Priority.NORMAL, max_wait: float = MAX_WAIT_SECONDS, per_request: bool = False
    ) -> SystemeSession:
        """The calls of one attempt; `max_wait` bounds the seconds its requests together wait for the quota, or
        each request's wait with `per_request` (a sync, which may take as long as buyers keep the quota)."""
        return SystemeSession(self, priority=priority, max_wait=max_wait, per_request=per_request)

    async def aclose(self) -> None:
        await self.http.aclose()


# How many times a sync's read is sent before its failure ends the read (it resumes later from its page), and the
# pause before the second (doubled each time, unless the answer says Retry-After): a busy moment, not an outage.
READ_TRIES = 4
READ_PAUSE = 0.25


class SystemeSession:
    """The calls of one action attempt, each recorded (request, answer, time) for the operator."""

    def __init__(
        self,
        client: SystemeClient,
        *,
        priority: Priority = Priority.NORMAL,
        max_wait: float = MAX_WAIT_SECONDS,
        per_request: bool = False,
    ) -> None:
        self.client = client
        self.calls: list[dict[str, Any]] = []
        self.priority = priority
        self.max_wait = max_wait
        self.per_request = per_request
        self.waited = 0.0

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        allow: Collection[int] = (),
    ) -> httpx.Response:
        """Send one request; raise Transient/PermanentApiError unless the status is 2xx or in `allow`. A session
        bounded per request (a sync's reads) asks a GET again after a 429, a 5xx or a network error, a few times:
        one busy moment must not end a read of the whole account."""
        for tries in range(1, READ_TRIES + 1):
            try:
                return await self._send(method, path, params=params, body=body, content_type=content_type, allow=allow)
            except TransientApiError as exc:
                if not self.per_request or method != "GET" or tries == READ_TRIES:
                    raise
                await asyncio.sleep(
                    min(exc.retry_after if exc.retry_after is not None else READ_PAUSE * 2**tries, 30.0)
                )
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        content_type: str,
        allow: Collection[int],
    ) -> httpx.Response:
        waiting = time.monotonic()
        try:
            bound = self.max_wait if self.per_request else max(0.0, self.max_wait - self.waited)
            ticket = await self.client.quota.acquire(priority=self.priority, max_wait=bound)
        finally:
            self.waited += time.monotonic() - waiting
        started, clock = datetime.now(UTC), time.perf_counter()
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        record: dict[str, Any] = {"method": method, "path": path, "request_body": body, "started_at": started}
        if params:
            record["path"] = f"{path}?{httpx.QueryParams(params)}"
        self.calls.append(record)
        try:
            response = await self.client.http.request(method, path, params=params, content=content, headers=headers)
        except httpx.TransportError as exc:
            await self.client.quota.observe(None, ticket)
            record.update(duration_ms=(time.perf_counter() - clock) * 1000, error=f"{type(exc).__name__}: {exc}")
            # The host in words: "could not connect" alone does not say whether the key, the URL or the network.
            where = self.client.http.base_url.netloc.decode() or "the API"
            raise TransientApiError(f"{method} {path}: network error reaching {where}: {type(exc).__name__}") from exc
        except Exception as exc:
            # Anything else (an URL httpx refuses, a bug): the call is still recorded whole, and the attempt ends
            # like a transient failure, so the action is retried a bounded number of times and ends dead.
            await self.client.quota.observe(None, ticket)
            text = f"{type(exc).__name__}: {exc}"[:500]
            record.update(duration_ms=(time.perf_counter() - clock) * 1000, error=text)
            raise TransientApiError(f"{method} {path[:200]}: unexpected error: {text}") from exc
        record.update(
            duration_ms=(time.perf_counter() - clock) * 1000,
            status_code=response.status_code,
            response_body=response.text[:_BODY_LIMIT],
        )
        await self.client.quota.observe(response, ticket)
        log.info("%s %s answered %d", method, path, response.status_code)  # never the query: it may hold an email
        if response.is_success or response.status_code in allow:
            return response
        message = f"{method} {path} answered {response.status_code}: {problem(response)}"
        if account_refused(response, maton=self.client.maton):
            raise AccountUnusable(message, status=response.status_code)
        if response.status_code == 403:
            raise Forbidden(message, status=403)
        if response.status_code == 429 or response.status_code >= 500:
            retry = _retry_after(response.headers.get("retry-after"))
            raise TransientApiError(message, status=response.status_code, retry_after=retry)
        raise PermanentApiError(message, status=response.status_code)

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", path, params=params)).json()

    async def paginate(
        self, path: str, params: dict[str, Any] | None = None, *, limit: int = 100, order: str = "asc"
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a cursor-paginated collection, following `hasMore` with `startingAfter` (see `pages`)."""
        async for page in self.pages(path, params, limit=limit, order=order):
            for item in page:
                yield item

    async def pages(
        self, path: str, params: dict[str, Any] | None = None, *, limit: int = 100, order: str = "asc"
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The items of a cursor-paginated collection, a page at a time (a `startingAfter` in `params` starts
        after that id: a sync resuming where it stopped).

        Guarded against a server that ignores or repeats the cursor: a cursor sent twice, or a page with no item
        not seen before, ends the walk with a clear error instead of looping a worker forever. A 422 that names the
        limit (some lists refuse the documented maximum) is asked again once at the documented minimum. `order`
        "desc" walks newest first (a sync reads what is new and stops at what it has seen).
        """
        query: dict[str, Any] = {**(params or {}), "limit": limit, "order": order}
        seen: set[Any] = set()
        cursors: set[Any] = set()
        while True:
            response = await self.request("GET", path, params=query, allow=(422,))
            if response.status_code == 422:
                if query["limit"] > MIN_LIMIT and "limit" in problem(response).lower():
                    query["limit"] = MIN_LIMIT
                    continue
                raise PermanentApiError(f"GET {path} answered 422: {problem(response)}", status=422)
            page = response.json()
            items = page.get("items") or []
            fresh = [item for item in items if item.get("id") not in seen]
            if items and not fresh:
                raise TransientApiError(f"GET {path}: the API answered a page it had already sent (pagination stuck)")
            seen.update(item.get("id") for item in fresh)
            yield fresh
            if not page.get("hasMore") or not items:
                return
            cursor = items[-1]["id"]
            if cursor in cursors:
                raise TransientApiError(f"GET {path}: the API repeated the cursor {cursor} (pagination stuck)")
            cursors.add(cursor)
            query["startingAfter"] = cursor

    async def first(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async for item in self.paginate(path, params):
            return item
        return None
