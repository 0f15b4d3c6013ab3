"""What a step runs with: the session that records its calls, the run's contact, and how far to trust the mirror."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.actions.contacts import ContactHandle, Contradiction
from app.actions.mirror import Known
from app.systeme.client import SystemeSession, problem
from app.systeme.errors import PermanentApiError


@dataclass
class StepContext:
    api: SystemeSession
    handle: ContactHandle | None
    spec: dict[str, Any] | None
    # Distrust what the mirror says is absent: a later attempt (an earlier one may have written before it
    # crashed) or a second try after a contradiction. Such a step reads before it writes.
    careful: bool = False
    # This try already forgot what the mirror and the name cache said and read again. Only then is a 404 or 422
    # the API's final word; on a first attempt and on a retry alike, an earlier one is a contradiction to heal.
    refreshed: bool = False
    # How long after a join a membership that is not listed yet is looked for again (RetryPolicy.listing_wait).
    listing_wait: float = 60.0
    # False for a step that only takes something away: it never creates the contact (NoContact when there is none).
    create: bool = True

    async def contact(self, *, facts: bool = False) -> Known:
        """The run's contact, resolved once; `facts`: its tags and fields must be current."""
        if self.handle is None or self.spec is None:
            raise PermanentApiError("this action needs a contact, but its rule has none")
        return await self.handle.resolve(self.api, self.spec, facts=facts, careful=self.careful, create=self.create)

    def trusted(self) -> bool:
        """Whether the mirror's facts about the contact may decide, without a read."""
        return not self.careful and self.handle is not None and self.handle.fresh()

    async def write(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, missing_ok: bool = False
    ) -> httpx.Response:
        """A write addressed with ids from the mirror or the name cache.

        A 404 or 422 contradicts them: unless this try already forgot them and read again, that is a Contradiction
        (the run forgets what it knew and tries the step again), not a failure. That holds for a retry too: a
        careful attempt reads the contact again, but a tag id can still come from the name cache (the simulator
        restarted, a tag deleted by hand). A careful DELETE may find nothing to delete (`missing_ok`).
        """
        response = await self.api.request(method, path, body=body, allow=(404, 422))
        if response.status_code in (404, 422):
            if self.careful and missing_ok and response.status_code == 404:
                return response
            message = f"{method} {path} answered {response.status_code}: {problem(response)}"
            if not self.refreshed:
                raise Contradiction(message)
            raise PermanentApiError(message, status=response.status_code)
        return response
