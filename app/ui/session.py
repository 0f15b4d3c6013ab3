"""Dashboard sign-in: a signed session cookie (SameSite=Strict) and a CSRF token bound to it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from app.config import Settings

COOKIE = "sf_session"
LIFETIME_SECONDS = 12 * 3600


def _key(settings: Settings) -> bytes:
    # Derived from the admin tokens: changing them signs everyone out.
    secret = settings.admin_token.get_secret_value() if settings.admin_token else ""
    return hashlib.sha256(b"systeme-flow-session\0" + secret.encode()).digest()


def _sign(settings: Settings, text: str) -> str:
    return hmac.new(_key(settings), text.encode(), hashlib.sha256).hexdigest()


def issue(settings: Settings, operator: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + LIFETIME_SECONDS)
    body = base64.urlsafe_b64encode(f"{operator}|{expires}".encode()).decode()
    return f"{body}.{_sign(settings, body)}"


def operator_of(settings: Settings, cookie: str | None, now: float | None = None) -> str | None:
    """The signed-in operator's name, or None for a missing, forged or expired cookie."""
    if not cookie or "." not in cookie or settings.admin_token is None:
        return None
    body, signature = cookie.rsplit(".", 1)
    if not hmac.compare_digest(signature, _sign(settings, body)):
        return None
    try:
        operator, expires = base64.urlsafe_b64decode(body.encode()).decode().rsplit("|", 1)
    except (ValueError, UnicodeDecodeError):
        return None
    return operator if int(expires) > (now or time.time()) else None


def csrf_token(settings: Settings, cookie: str) -> str:
    return _sign(settings, f"csrf|{cookie}")[:32]


def csrf_ok(settings: Settings, cookie: str | None, token: str | None) -> bool:
    return bool(cookie and token) and hmac.compare_digest(csrf_token(settings, cookie or ""), token or "")
