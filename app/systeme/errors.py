"""Systeme.io failures, sorted at the client boundary into ones worth retrying and ones that are final.

ApiError
├── TransientApiError   network errors, timeouts, 429 and 5xx, and anything unexpected while sending: try again
│                       later (retry_after when the API said; `throttled` when only the quota stood in the way)
├── PermanentApiError   any other 4xx: retrying would get the same answer
│   └── Forbidden       a 403: this key may not touch this record or feature; whether the account itself is
│                       refused is decided by one probe (a cheap read) before the account is held
└── AccountUnusable     the account itself refused us (a revoked key, no Maton connection, an expired
                        authorisation): nothing fails for it; the account is held until a probe passes
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientApiError(ApiError):
    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        # A 429 or our own quota said "not now": the attempt is not held against the action.
        self.throttled = throttled or status == 429


class PermanentApiError(ApiError):
    pass


class Forbidden(PermanentApiError):
    pass


class AccountUnusable(ApiError):
    pass
