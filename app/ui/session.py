"""Dashboard sign-in: a signed session cookie (SameSite=Strict) naming a session kept on the server, and a CSRF
token bound to the cookie.

The signature refuses forged cookies without a database read; the server-side row lets signing out end the
session for good (a copied cookie stops working), on every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from app.config import Settings

COOKIE = "sf_session"
LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    operator: str
    key: str  # what the server stores: the hash of the cookie's random id
    expires: int  # Unix time


def _key(settings: Settings) -> bytes:
    # Derived from the admin tokens: changing them signs everyone out.
    secret = settings.admin_token.get_secret_value() if settings.admin_token else ""
    return hashlib.sha256(b"systeme-flow-session\0" + secret.encode()).digest()


def _sign(settings: Settings, text: str) -> str:
    return hmac.new(_key(settings), text.encode(), hashlib.sha256).hexdigest()


def _server_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def issue(settings: Settings, operator: str, now: float | None = None) -> tuple[str, Session]:
    """A new cookie value and the session the server must store for it."""
    expires = int((now or time.time()) + LIFETIME_SECONDS)
    session_id = secrets.token_urlsafe(24)
    body = base64.urlsafe_b64encode(f"{operator}|{expires}|{session_id}".encode()).decode()
    return f"{body}.{_sign(settings, body)}", Session(operator, _server_key(session_id), expires)


def parse(settings: Settings, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie names, or None for a missing, forged or expired one; the server decides if it is open."""
    if not cookie or "." not in cookie or settings.admin_token is None:
        return None
    body, signature = cookie.rsplit(".", 1)
    if not hmac.compare_digest(signature, _sign(settings, body)):
        return None
    try:
        operator, expires, session_id = base64.urlsafe_b64decode(body.encode()).decode().rsplit("|", 2)
        until = int(expires)
    except (ValueError, UnicodeDecodeError):
        return None
    return Session(operator, _server_key(session_id), until) if until > (now or time.time()) else None


def csrf_token(settings: Settings, cookie: str) -> str:
    return _sign(settings, f"csrf|{cookie}")[:32]


def csrf_ok(settings: Settings, cookie: str | None, token: str | None) -> bool:
    return bool(cookie and token) and hmac.compare_digest(csrf_token(settings, cookie or ""), token or "")
