"""Systeme.io failures, sorted at the client boundary into ones worth retrying and ones that are final.

ApiError
├── TransientApiError   network errors, timeouts, 429 and 5xx: try again later (retry_after when the API said)
└── PermanentApiError   any other 4xx: retrying would get the same answer
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientApiError(ApiError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentApiError(ApiError):
    pass
