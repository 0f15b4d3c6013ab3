"""Settings: the only place that reads the environment (and `.env`)."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.timeparse import parse_duration

MATON_URL = "https://api.maton.ai/systeme"
SYSTEME_URL = "https://api.systeme.io"
MATON_CONTROL_URL = "https://api.maton.ai"
SERVICE_URL = "http://127.0.0.1:8000"  # where `make run` serves
# The secrets refused when they hold an example value (`replace_me`).
SECRET_SETTINGS = ("maton_api_key", "systeme_api_key", "metrics_token", "admin_token")
_PLACEHOLDERS = {"secret", "xxx", "placeholder", "todo"}
# `.env.example` holds `replace_me` (and `whsec_` + its base64): a copy that was never edited must not start.
_PLACEHOLDER_WORDS = re.compile(r"(replace|change)[-_ ]?me|your[-_ ].*[-_ ]here|^x+$|^\.+$|^<.*>$")
# `name=token` pairs only when every name is a plain identifier: base64 tokens end in `=` and hold `+` and `/`.
_OPERATOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def is_placeholder(value: str) -> bool:
    """True for example values such as `replace_me`, `whsec_replace_me` or `whsec_` + base64 of one, any case."""
    text = value.strip().lower()
    candidates = [text, text.removeprefix("whsec_")]
    try:
        candidates.append(base64.b64decode(value.strip().removeprefix("whsec_"), validate=True).decode().lower())
    except ValueError:  # not base64, or not text once decoded
        pass
    return any(c in _PLACEHOLDERS or _PLACEHOLDER_WORDS.search(c) for c in candidates)


def _operator_pairs(raw: str) -> dict[str, str] | None:
    """token -> name for `name=token,...`, or None when the value is not made of such pairs."""
    pairs: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, token = (p.strip() for p in part.partition("="))
        if not sep or not _OPERATOR_NAME.fullmatch(name) or not token.strip("="):
            return None
        pairs[token] = name
    return pairs or None


class Settings(BaseSettings):
    """Everything the service reads from its environment; names are the documented contract."""

    # hide_input_in_errors: a validation error must never echo an API key back.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False, hide_input_in_errors=True)

    maton_api_key: SecretStr | None = None
    maton_connection: str | None = None
    systeme_api_key: SecretStr | None = None
    systeme_api_url: str | None = None
    # Maton's control API (connections); the simulator stands in for it in tests and trials.
    maton_control_url: str = MATON_CONTROL_URL
    database_url: str = "sqlite+aiosqlite:///./var/systeme-flow.db"
    redis_url: str | None = None
    rules_file: str = "rules.yaml"
    admin_token: SecretStr | None = None
    max_body_bytes: int = 1024 * 1024
    # Bytes of one request's line and headers; more is a 431 and the connection is closed.
    max_header_bytes: int = 16 * 1024
    # Time limits on each connection (app/server.py): a request head must be complete this long after its first
    # byte, a body this long after its head (a deadline, so a trickle of any speed is cut off), and a connection
    # that sends nothing is closed after the keep-alive timeout, on connect as between requests.
    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    keepalive_timeout_seconds: float = 5.0
    # Open connections at once; past it a new one is answered 503 and closed before anything is read.
    max_connections: int = 2048
    # Fields of one form post (urlencoded or multipart); more is a 400, refused before any are collected.
    max_form_fields: int = 1000
    http_timeout_seconds: float = 15.0
    # How long a claimed run holds its actions without a heartbeat; a live run renews it every third of that,
    # so a killed worker's run is taken over within a lease plus one sweep.
    action_lease_seconds: int = 30
    # Delays before each retry of a transient failure (the last one repeats); Retry-After wins when the API sends it.
    retry_schedule: str = "5s,30s,2m,10m,30m,1h,3h,6h,12h"
    retry_max_attempts: int = 10
    # How long what the contact mirror learned (tags, fields, enrollments) is trusted without asking again.
    mirror_fresh_seconds: int = 900
    # The default account's contact mirror: `learning` (what answers and our writes taught, trusted while fresh) or
    # `complete` (read whole by `systeme-flow sync`: an email it does not know is created at once, no lookup).
    mirror_mode: Literal["learning", "complete"] = "learning"
    # How often the service reads a complete mirror's account again (a full read: it sees hand edits too).
    mirror_sync_hours: float = 24.0
    # Runs (one event's actions for one contact) a worker process executes at once; few, so that under a
    # backlog the earliest buyers take the quota first instead of every buyer advancing one step at a time.
    worker_concurrency: int = 3
    # The longest a run waits for its account's quota in its worker slot; past that it gives the slot back and is
    # taken up again when the quota refills, so one account's backlog never holds another account's buyers.
    quota_slot_wait_seconds: float = 0.2
    ordering_wait_seconds: int = 600
    # Requests per second to the API, on top of the account quota; default 10 through Maton (its limit), else none.
    api_max_rps: int | None = None
    approval_timeout_hours: float = 168.0
    # Fires of one rule for one contact in an hour before its further actions wait for approval: a rule on tag
    # events can loop with a Systeme.io automation that tags back (Systeme.io stops its own at 20).
    rule_fires_per_contact: int = 20
    embedded_concurrency: int = 4
    # How often workers look for due, scheduled and abandoned work (the lost-hint safety net).
    sweep_seconds: int = 10
    log_format: Literal["auto", "json", "console"] = "auto"
    retention_days: int = 90
    # A payment whose access actions have not all succeeded this long after it arrived is unserved.
    access_deadline_minutes: float = Field(10.0, gt=0)
    alert_webhook_url: str | None = None
    alert_approval_hours: float = 24.0
    alert_silence_hours: float = 48.0
    # Peers whose X-Forwarded-For is believed (comma-separated addresses or networks); none by default.
    forwarded_allow_ips: str = ""
    # /docs, /redoc and /openapi.json describe every endpoint to anyone: off unless asked for.
    api_docs: bool = False
    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None
    # The running service, for the commands that talk to it over HTTP (`send`, `health`); `--url` wins.
    systeme_flow_url: str = SERVICE_URL
    # What the host publishes the container's port on (compose's API_PORT: `8000`, `127.0.0.1:8000`, or
    # `127.0.0.1:` for a free port per replica): the address the banner shows, not the container's own.
    api_port: str | None = None

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        delays = [parse_duration(part) for part in value.split(",") if part.strip()]
        if not delays:
            raise ValueError("RETRY_SCHEDULE needs at least one delay, e.g. 5s,30s,2m")
        return value

    @field_validator("head_timeout_seconds", "body_timeout_seconds", "keepalive_timeout_seconds", "max_connections")
    @classmethod
    def _positive(cls, value: float) -> float:
        # 0 would close every connection at once; a negative timer fires at once too.
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator("systeme_api_url", "alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Caught here, in words, rather than as an "unexpected error" on every request to it. Empty is unset.
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not echoed: an alert webhook's URL is often its secret (Slack's, Discord's).
            raise ValueError("is not an http(s) URL: write it whole, with https:// and the host")
        return value.strip()

    @field_validator("rule_fires_per_contact")
    @classmethod
    def _fires(cls, value: int) -> int:
        if value < 1:
            raise ValueError("RULE_FIRES_PER_CONTACT must be at least 1 (fires of a rule per contact an hour), e.g. 20")
        return value

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        # 0 or less would purge every finished event at the next sweep, minutes after it arrived.
        if value < 1:
            raise ValueError("RETENTION_DAYS must be at least 1 (days an event is kept), e.g. 90")
        return value

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return tuple(parse_duration(part) for part in self.retry_schedule.split(",") if part.strip())

    @model_validator(mode="after")
    def _one_api_key(self) -> Settings:
        if self.maton_api_key is not None and self.systeme_api_key is not None:
            raise ValueError(
                "both MATON_API_KEY and SYSTEME_API_KEY are set: keep one "
                "(MATON_API_KEY to go through the Maton proxy, SYSTEME_API_KEY to call Systeme.io directly)"
            )
        # Every placeholder at once: an unedited .env must not cost one restart per secret.
        found = []
        for name in SECRET_SETTINGS:
            value: SecretStr | None = getattr(self, name)
            if name != "admin_token" and value is not None and is_placeholder(value.get_secret_value()):
                found.append(f"{name.upper()} still holds a placeholder value: set a real one")
        for token, operator in self.operators().items():
            if is_placeholder(token):
                whose = f" for operator {operator!r}" if len(self.operators()) > 1 or operator != "admin" else ""
                found.append(f"ADMIN_TOKEN still holds a placeholder value{whose}: set a real one")
        if found:
            raise ValueError("; ".join(found))
        return self

    def published_address(self) -> tuple[str, int | None] | None:
        """(host, port) the host publishes this container on, from API_PORT; port None when each replica gets a
        free one; None when API_PORT is unset."""
        if not self.api_port:
            return None
        host, _, port = self.api_port.strip().rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port) if port.isdigit() else None

    @property
    def api_mode(self) -> Literal["maton", "direct", "dry-run"]:
        if self.maton_api_key is not None:
            return "maton"
        if self.systeme_api_key is not None:
            return "direct"
        return "dry-run"

    @property
    def api_base_url(self) -> str:
        if self.systeme_api_url:
            return self.systeme_api_url.rstrip("/")
        return SYSTEME_URL if self.api_mode == "direct" else MATON_URL

    @property
    def api_headers(self) -> dict[str, str]:
        """Authentication headers for the Systeme.io API (or the Maton proxy in front of it)."""
        if self.maton_api_key is not None:
            headers = {"Authorization": f"Bearer {self.maton_api_key.get_secret_value()}"}
            if self.maton_connection:
                headers["Maton-Connection"] = self.maton_connection
            return headers
        if self.systeme_api_key is not None:
            return {"X-API-Key": self.systeme_api_key.get_secret_value()}
        return {}

    def operators(self) -> dict[str, str]:
        """token -> operator name. ADMIN_TOKEN is one token (named "admin") or `name=token` pairs, comma-separated,
        each name a plain identifier (so a base64 token with `=` in it stays one token)."""
        if self.admin_token is None:
            return {}
        raw = self.admin_token.get_secret_value()
        pairs = _operator_pairs(raw)
        return pairs if pairs is not None else {raw.strip(): "admin"}

    @property
    def per_second_cap(self) -> int:
        if self.api_max_rps is not None:
            return self.api_max_rps
        return 10 if self.api_mode == "maton" else 0

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    def secret_values(self) -> set[str]:
        """Values that must never reach a log line."""
        values: set[str] = set()
        for secret in (self.maton_api_key, self.systeme_api_key, self.admin_token, self.metrics_token):
            if secret is not None:
                values.add(secret.get_secret_value())
        values |= set(self.operators())
        for url in (self.database_url, self.redis_url):
            password = urlsplit(url).password if url else None
            if password:
                values.add(unquote(password))
        return {v for v in values if v}


def env_file_values(env_file: str) -> dict[str, str]:
    """The variables a `.env` file sets (none when it does not exist)."""
    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


def rules_environment(env_file: str = ".env") -> Mapping[str, str]:
    """Variables a rules file may reference as `${VAR}`: `.env` first, the process environment wins."""
    values = env_file_values(env_file)
    values.update(os.environ)
    return values


def setting_source(name: str, env_file: str = ".env") -> str | None:
    """Where a setting is set, as Settings reads it (the environment wins over the file); never its value."""
    if any(key.upper() == name for key in os.environ):
        return "the environment"
    if any(key.upper() == name for key in dotenv_values(env_file)):
        return env_file
    return None


def settings_problems(exc: ValidationError, env_file: str = ".env") -> list[str]:
    """One line per invalid setting, naming its variable and where it is set: the message alone ("Input should be
    a valid integer") leaves a person guessing which of thirty. Never the value: it may be a secret."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            name = str(error["loc"][0]).upper()
            where = setting_source(name, env_file)
            if not message.startswith(name):
                message = f"{name}: {message.removeprefix('Input ')}"
            if where:
                message = f"{message} (set in {where})"
        problems.append(message)
    return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
