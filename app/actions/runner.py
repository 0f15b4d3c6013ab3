"""One run: the planned actions of one event for one contact, in rule and step order, with the contact resolved once.

Each action keeps its own row, status, outcome and API calls. A transient failure at step k records step k, gives
back the steps after it, and the next attempt starts at step k; a permanent failure only ends its own step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.modes import Modes
from app.actions.contacts import ContactHandle, Contradiction, NoContact
from app.actions.context import StepContext
from app.actions.giveback import STEP_QUOTA_WAIT, before_claim, come_back_at
from app.actions.local import LOCAL_STEPS
from app.actions.mirror import Known
from app.actions.params import ActionParams, BadParams, parse_params
from app.actions.policy import RetryPolicy, RunResult
from app.actions.resolve import forget_names, same_target
from app.actions.steps import REVOKING, STEPS, unmet_condition
from app.store.actions import ClaimedAction, claim_run, finish, next_for_contact, release, renew
from app.store.contacts import ContactWrite, load_contact
from app.store.convergence import LaterStep, awaits_judgement, later_steps
from app.store.mirror import count_miss, load_sync
from app.store.models import new_id, utcnow
from app.store.statuses import ActionStatus, RunStatus
from app.systeme.client import SystemeClient, SystemeSession
from app.systeme.errors import AccountUnusable, ApiError, Forbidden, PermanentApiError, TransientApiError

if TYPE_CHECKING:
    from app.accounts.registry import AccountClients

log = logging.getLogger(__name__)
DRY_RUN = "dry run: no MATON_API_KEY or SYSTEME_API_KEY is set, nothing was sent"
# Between two looks at whether the events received before a run's own are judged yet.
UNJUDGED_POLL = timedelta(seconds=0.5)


@dataclass
class _Step:
    status: ActionStatus
    outcome: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    counted: bool = True
    held: str | None = None


async def run_actions(*, engine: AsyncEngine, client: AccountClients, action_id: str, policy: RetryPolicy) -> RunResult:
    """Claim and execute the run that `action_id` belongs to, with its account's client."""
    token = new_id("run")
    back = await before_claim(engine, client, action_id, policy.quota_wait)
    if back is not None:
        return RunResult(RunStatus.RESCHEDULED, {}, back[0], back[1], priority=back[2])
    # Work planned under another mode (a dry run, the simulator) is never taken here: see app/accounts/modes.py.
    modes = None if isinstance(client, SystemeClient) else client.modes
    now = utcnow()
    waiting = await awaits_judgement(engine, action_id, now=now, bound=policy.unjudged_wait)
    if waiting is not None:
        # Looked at again shortly: the planner judges a fresh event within about a second, the sweep a stray one.
        return RunResult(RunStatus.WAITING, next_attempt_at=now + UNJUDGED_POLL, retry=(action_id, waiting))
    claimed = await claim_run(
        engine,
        action_id,
        token=token,
        now=now,
        lease=policy.lease,
        ordering_wait=policy.ordering_wait,
        max_attempts=policy.max_attempts,
        modes=modes,
    )
    if not claimed:
        return RunResult(RunStatus.NOT_CLAIMED)
    account = claimed[0].account
    chosen = client.client(account)
    problem = client.problem(account)
    if chosen is None or problem is not None:
        await release(engine, token, now=utcnow(), next_attempt_at=None)
        return RunResult(RunStatus.HELD, held=(account, problem or f"account '{account}' is not configured"))
    complete = await _complete(engine, client, account)
    heartbeat = asyncio.create_task(_heartbeat(engine, token, policy.lease))
    try:
        return await _Run(engine, chosen, policy, token, claimed, modes, complete=complete).execute()
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


async def _complete(engine: AsyncEngine, client: AccountClients | SystemeClient, account: str) -> bool:
    """Whether the account's mirror is complete now: chosen so, and synced under the account's current mode (the
    mirror of a simulator or a dry run says nothing of a live account)."""
    if isinstance(client, SystemeClient):
        return False
    configured = client.accounts.get(account)
    if configured is None or configured.mirror != "complete":
        return False
    synced = await load_sync(engine, account)
    return synced is not None and synced.mode == client.modes.get(account)


async def _probe(api: SystemeSession) -> str | None:
    """After a 403: the API's words when the account refuses a cheap read too (hold it), None when it works."""
    try:
        await api.request("GET", "/api/tags", params={"limit": 10})
    except (AccountUnusable, Forbidden) as exc:
        return exc.message
    except ApiError:
        return None  # down or slow: the 403 itself stands, as a failure of this step
    return None


async def _heartbeat(engine: AsyncEngine, token: str, lease: timedelta) -> None:
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        try:
            await renew(engine, token, until=utcnow() + lease)
        except Exception:
            log.warning("renewing the lease of run %s failed; trying again", token, exc_info=True)


class _Run:
    def __init__(
        self,
        engine: AsyncEngine,
        client: SystemeClient,
        policy: RetryPolicy,
        token: str,
        claimed: list[ClaimedAction],
        modes: Modes | None = None,
        *,
        complete: bool = False,
    ) -> None:
        self.engine, self.client, self.policy, self.token, self.claimed = engine, client, policy, token, claimed
        self.modes, self.complete = modes, complete
        self.handle: ContactHandle | None = None
        self.result = RunResult(RunStatus.DONE)
        self._saved: tuple[int, dict[str, Any], datetime] | None = None
        self.later: list[LaterStep] = []

    async def execute(self) -> RunResult:
        first = self.claimed[0]
        if first.contact_email is not None and not self.client.dry_run:
            entry = await load_contact(self.engine, first.account, first.contact_email)
            known = Known.from_json(*entry) if entry is not None else None
            self._saved = (known.contact_id, known.to_json(), known.learned_at) if known is not None else None
            window = self.policy.mirror_fresh
            self.handle = ContactHandle(first.contact_email, known, window=window, complete=self.complete)
        # What later events already did for the contact: this run came out of order, and may be overturned.
        self.later = [] if all(a.delayed for a in self.claimed) else await later_steps(self.engine, first)
        note = None
        if not first.delayed and self.later:
            note = "out of order: an action of a later event for this contact already ran"
        started = time.monotonic()
        for index, action in enumerate(self.claimed):
            if index and time.monotonic() - started > self.policy.run_seconds:
                await release(self.engine, self.token, now=utcnow(), next_attempt_at=None)
                self.result.follow_up = ((action.id, action.attempt),)
                break
            due = await come_back_at(self.client, action.priority, self.policy.quota_wait) if index else None
            if due is not None and action.kind not in LOCAL_STEPS:
                # Out of quota between steps: the slot is given back before a step it could not finish.
                await release(self.engine, self.token, now=utcnow(), next_attempt_at=due)
                retry, statuses = (action.id, action.attempt), self.result.statuses
                self.result = RunResult(RunStatus.RESCHEDULED, statuses, due, retry, priority=action.priority)
                break
            api = self.client.session(priority=action.priority, max_wait=max(self.policy.quota_wait, STEP_QUOTA_WAIT))
            try:
                step = await self._step(api, action)
            except asyncio.CancelledError:
                # The worker is stopping: this step's request may have gone out, so its attempt counts (the next one
                # reads before writing); the steps not reached go back at once for another worker.
                await asyncio.shield(self._interrupted(api, action))
                raise
            if self.handle is not None and self.handle.missed:
                self.handle.missed = False
                log.info("mirror miss: the contact was in account %s but not in its complete mirror", action.account)
                await count_miss(self.engine, action.account)
            if not await self._record(api, action, step, self._note(note)):
                log.warning("run %s lost its lease; another worker owns its actions now", self.token)
                return self.result
            if step.held is not None:
                # The account refused us: everything waits as it is, and the account is held until a probe passes.
                await release(self.engine, self.token, now=utcnow(), next_attempt_at=None)
                self.result.status, self.result.held = RunStatus.HELD, (action.account, step.held)
                break
            if step.status == ActionStatus.PENDING:
                await release(self.engine, self.token, now=utcnow(), next_attempt_at=step.next_attempt_at)
                attempt = action.attempt + 1 if step.counted else action.attempt
                self.result = RunResult(
                    RunStatus.RESCHEDULED,
                    self.result.statuses,
                    step.next_attempt_at,
                    (action.id, attempt),
                    priority=action.priority,
                )
                break
        await self._hand_over(first)
        return self.result

    async def _step(self, api: SystemeSession, action: ClaimedAction) -> _Step:
        context = {"action_id": action.id, "event_id": action.event_id, "rule_id": action.rule_id, "kind": action.kind}
        try:
            params = parse_params(action.kind, action.params)
        except BadParams as exc:
            # No retry makes such a row runnable: it ends here, visibly, and the run goes on with the next step.
            log.warning("action failed: %s", exc, extra=context)
            return _Step(ActionStatus.FAILED, error=str(exc)[:1000])
        if self.client.dry_run and action.kind not in LOCAL_STEPS:
            return _Step(ActionStatus.SKIPPED, DRY_RUN)
        wait = self.policy.listing_wait.total_seconds()
        careful, create = action.attempt > 1, action.kind not in REVOKING
        ctx = StepContext(api, self.handle, action.contact, careful=careful, listing_wait=wait, create=create)
        try:
            for second_try in (False, True):
                try:
                    return await self._do(ctx, action, params, context)
                except Contradiction as exc:
                    if second_try:
                        raise PermanentApiError(str(exc)) from exc
                    # What we knew was wrong (a contact deleted, a tag removed by hand): forget it and read again.
                    log.info("mirror contradicted (%s); trying again from fresh reads", exc, extra=context)
                    await forget_names(api, params)
                    if self.handle is not None:
                        self.handle.forget()
                    ctx.careful = ctx.refreshed = True
        except AccountUnusable as exc:
            return self._held(action, exc.message, context)
        except Forbidden as exc:
            # About this record or feature, or about the whole account? One cheap read decides.
            refused = await _probe(api)
            if refused is not None:
                return self._held(action, f"{exc.message} (and the probe GET /api/tags: {refused})", context)
            log.warning("action failed, the key may not touch it: %s", exc.message, extra=context)
            return _Step(ActionStatus.FAILED, error=f"{exc.message} (the key may not touch this record or feature)")
        except PermanentApiError as exc:
            log.warning("action failed: %s", exc.message, extra=context)
            return _Step(ActionStatus.FAILED, error=exc.message)
        except TransientApiError as exc:
            # A throttle is the quota doing its job (the run comes back when it refills, no attempt spent): not a
            # warning, or every launch would fill the log with them.
            level = logging.INFO if exc.throttled else logging.WARNING
            log.log(level, "action attempt %d failed: %s", action.attempt, exc.message, extra=context)
            return self._transient(action.attempt, exc.message, exc.retry_after, counted=not exc.throttled)
        except Exception as exc:
            # A bug or an answer we did not expect: it counts as an attempt, so it ends dead and visible, not looping.
            log.exception("action attempt %d crashed", action.attempt, extra=context)
            return self._transient(action.attempt, f"unexpected error: {exc!r}"[:1000], None, counted=True)
        raise AssertionError("unreachable")

    async def _do(
        self, ctx: StepContext, action: ClaimedAction, params: ActionParams, context: dict[str, Any]
    ) -> _Step:
        if action.kind in LOCAL_STEPS:
            # Our own rows, not Systeme.io: no contact to read, so no tag condition either.
            done = await LOCAL_STEPS[action.kind](self.engine, action, params)
            log.info("action succeeded: %s", done, extra=context)
            return _Step(ActionStatus.SUCCEEDED, done)
        overturned = await self._overturned(ctx, action)
        if overturned:
            log.info("action skipped: %s", overturned, extra=context)
            return _Step(ActionStatus.SKIPPED, overturned)
        try:
            unmet = await unmet_condition(ctx, action.kind)
            if unmet:
                log.info("action skipped: %s", unmet, extra=context)
                return _Step(ActionStatus.SKIPPED, unmet)
            done = await STEPS[action.kind](ctx, params)
        except NoContact as exc:
            done = str(exc)
        log.info("action succeeded: %s", done, extra=context)
        return _Step(ActionStatus.SUCCEEDED, done)

    async def _overturned(self, ctx: StepContext, action: ClaimedAction) -> str | None:
        """Why a later event that already undid (or redid) this step has the last word, in event order; None when
        none did (app/store/convergence.py). A delayed step runs after later events by design: never overturned."""
        if action.delayed:
            return None
        for later in self.later:
            if later.overturns(action) and await same_target(ctx.api, action.kind, action.params, later.params):
                return later.reason()
        return None

    def _note(self, note: str | None) -> str | None:
        """The run's note, with what this step's contact create or patch left out (then forgotten)."""
        if self.handle is None or not self.handle.notes:
            return note
        parts = ([note] if note else []) + self.handle.notes
        self.handle.notes = []
        return "; ".join(parts)

    def _held(self, action: ClaimedAction, reason: str, context: dict[str, Any]) -> _Step:
        log.error("account %s refused the request, held: %s", action.account, reason, extra=context)
        message = f"waiting: the account is held ({reason})"
        return _Step(ActionStatus.PENDING, error=message, next_attempt_at=utcnow(), counted=False, held=reason)

    def _transient(self, attempt: int, message: str, retry_after: float | None, *, counted: bool) -> _Step:
        if counted and attempt >= self.policy.max_attempts:
            return _Step(ActionStatus.DEAD, error=f"gave up after {attempt} attempts: {message}")
        delay = self.policy.delay(attempt, retry_after)
        return _Step(
            ActionStatus.PENDING, error=message, next_attempt_at=utcnow() + timedelta(seconds=delay), counted=counted
        )

    async def _record(self, api: SystemeSession, action: ClaimedAction, step: _Step, note: str | None) -> bool:
        recorded = await finish(
            self.engine,
            action,
            token=self.token,
            status=step.status,
            error=step.error,
            outcome=step.outcome,
            next_attempt_at=step.next_attempt_at,
            calls=api.calls,
            now=utcnow(),
            note=note,
            counted=step.counted,
            mirror=self._mirror_write(action),
        )
        if recorded:
            self.result.statuses[action.id] = step.status
        return recorded

    def _mirror_write(self, action: ClaimedAction) -> ContactWrite | None:
        """The mirror entry to store with this step, when the run learned or granted something since the last one."""
        handle = self.handle
        if handle is None or action.contact_email is None:
            return None
        known = handle.known
        entry = (known.contact_id, known.to_json(), known.learned_at) if known is not None else None
        if entry == self._saved and not handle.changed:
            return None
        handle.changed, self._saved = False, entry
        if entry is None:
            return ContactWrite(action.account, action.contact_email, None, {}, None)
        return ContactWrite(action.account, action.contact_email, *entry)

    async def _interrupted(self, api: SystemeSession, action: ClaimedAction) -> None:
        try:
            step = _Step(
                ActionStatus.PENDING, error="interrupted: the worker stopped during this step", next_attempt_at=utcnow()
            )
            await self._record(api, action, step, None)
            await release(self.engine, self.token, now=utcnow(), next_attempt_at=None)
        except Exception:
            log.exception("releasing run %s failed; its lease runs out instead", self.token)

    async def _hand_over(self, first: ClaimedAction) -> None:
        if self.result.follow_up:
            return
        mine = {a.id for a in self.claimed}
        following = await next_for_contact(
            self.engine, first.contact_email, now=utcnow(), account=first.account, modes=self.modes
        )
        self.result.follow_up = tuple(f for f in following if f[0] not in mine)
