"""One exception tree; every expected failure carries the HTTP status it maps to.

AppError
├── BadRequest (400)            body or parameters that cannot be parsed
│   └── RulesError (400)        a rules file that does not validate; `problems` lists each
├── Unauthorized (401)          missing or wrong signature, token or operator credentials
├── Forbidden (403)             a feature that is switched off (e.g. no ADMIN_TOKEN)
├── NotFound (404)              unknown source, event or action
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── TooManyRequests (429)       an unsigned source's per-client rate limit
├── Conflict (409)              an operation that does not fit the current state
└── StorageUnavailable (503)    the database cannot take the write; the sender should retry
"""

from __future__ import annotations


class AppError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AppError):
    status_code = 400


class RulesError(BadRequest):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid rules file:\n" + "\n".join(problems))
        self.problems = problems


class Unauthorized(AppError):
    status_code = 401

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        # A short label for counters: missing, malformed, stale, mismatch, token, seller.
        self.reason = reason


class TooManyRequests(AppError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Unprocessable(AppError):
    status_code = 422


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMediaType(AppError):
    status_code = 415


class StorageUnavailable(AppError):
    status_code = 503
