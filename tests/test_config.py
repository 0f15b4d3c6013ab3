"""Settings and secrets: operator tokens as written by people, and placeholders refused at start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values
from pydantic import ValidationError

from app.config import Settings, is_placeholder
from app.errors import RulesError
from app.rules.loader import parse_rules
from tests.clitools import cli, run_cli
from tests.conftest import running

ROOT = Path(__file__).resolve().parents[1]


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestOperatorTokens:
    @pytest.mark.parametrize(
        "token",
        [
            "q1w2e3r4t5y6u7i8o9p0aa==",  # openssl rand -base64 16
            "q1w2e3r4t5y6u7i8o9p0abc=",
            "ab+c/d9=",
            "k=",
            "=leading",
            "alice=tok-alice,==",
        ],
    )
    def test_a_token_with_equals_signs_is_one_token(self, token):
        assert settings(admin_token=token).operators() == {token: "admin"}

    def test_name_token_pairs_are_still_read(self):
        assert settings(admin_token="alice=tok-alice, bob=dGVzdA==").operators() == {
            "tok-alice": "alice",
            "dGVzdA==": "bob",
        }

    async def test_a_base64_token_signs_in_and_its_padding_does_not(self, make_settings, sqlite_url):
        token = "q1w2e3r4t5y6u7i8o9p0aa=="
        with running(make_settings(database_url=sqlite_url, admin_token=token)) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                good = await http.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
                bad = await http.get("/v1/events", headers={"Authorization": "Bearer ="})
        assert (good.status_code, bad.status_code) == (200, 401)


PLACEHOLDERS = [
    "replace_me",
    "REPLACE_ME",
    " Replace-Me ",
    "whsec_replace_me",
    "whsec_cmVwbGFjZV9tZQ==",  # base64 of replace_me, as in .env.example
    "changeme",
    "your-key-here",
    "replace_me_with_a_real_key",
]


class TestPlaceholders:
    @pytest.mark.parametrize("value", PLACEHOLDERS)
    @pytest.mark.parametrize("name", ["admin_token", "maton_api_key", "systeme_api_key"])
    def test_a_placeholder_secret_is_refused_by_name(self, name, value):
        with pytest.raises(ValidationError) as caught:
            settings(**{name: value})
        assert f"{name.upper()} still holds a placeholder" in str(caught.value)
        assert value not in str(caught.value)

    def test_every_placeholder_secret_is_named_at_once(self):
        with pytest.raises(ValidationError) as caught:
            settings(admin_token="replace_me", metrics_token="changeme", systeme_api_key="your-key-here")
        for name in ("ADMIN_TOKEN", "METRICS_TOKEN", "SYSTEME_API_KEY"):
            assert f"{name} still holds a placeholder" in str(caught.value)

    def test_a_placeholder_among_operator_tokens_is_refused(self):
        with pytest.raises(ValidationError, match="ADMIN_TOKEN still holds a placeholder.*'bob'"):
            settings(admin_token="alice=tok-alice,bob=replace_me")

    @pytest.mark.parametrize("value", PLACEHOLDERS)
    def test_a_placeholder_source_secret_is_a_load_error_naming_source_and_variable(self, value):
        text = (
            "version: 1\nsources:\n"
            "  stripe: { type: stripe, secret: ['whsec_real0123', '${STRIPE_WEBHOOK_SECRET}'] }\n"
            "  signup: { type: form, token: '${SIGNUP_FORM_TOKEN}' }\n"
        )
        env = {"STRIPE_WEBHOOK_SECRET": value, "SIGNUP_FORM_TOKEN": value}
        with pytest.raises(RulesError) as caught:
            parse_rules(text, path="r.yaml", env=env)
        assert caught.value.problems == [
            "r.yaml:3:35: source 'stripe': `secret` still holds a placeholder value (from ${STRIPE_WEBHOOK_SECRET}): set a real one",
            "r.yaml:4:32: source 'signup': `token` still holds a placeholder value (from ${SIGNUP_FORM_TOKEN}): set a real one",
        ]

    def test_a_placeholder_written_in_the_file_is_a_load_error(self):
        text = "version: 1\nsources:\n  signup: { type: form, token: replace_me }\n"
        with pytest.raises(RulesError, match="`token` still holds a placeholder value: set a real one"):
            parse_rules(text, path="r.yaml", env={})

    def test_serve_refuses_to_start_with_a_placeholder_admin_token(self, tmp_path):
        shutil.copy(ROOT / "rules.yaml", tmp_path)
        done = cli("serve", cwd=tmp_path, ADMIN_TOKEN="replace_me")
        assert done.returncode != 0
        assert "ADMIN_TOKEN still holds a placeholder" in done.stderr

    def test_env_example_copied_as_is_is_refused_and_make_run_secrets_are_accepted(self, tmp_path):
        for name in (".env.example", "rules.yaml"):
            shutil.copy(ROOT / name, tmp_path)
        shutil.copy(ROOT / ".env.example", tmp_path / ".env")
        raw = cli("check", "rules.yaml", cwd=tmp_path)
        assert raw.returncode == 1 and "still holds a placeholder value (from ${STRIPE_WEBHOOK_SECRET})" in raw.stdout
        refused = cli("serve", cwd=tmp_path)
        # Every placeholder at once, the settings' and the rules file's: one start to learn all there is to fix.
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1
        for name in ("METRICS_TOKEN", "ADMIN_TOKEN"):
            assert f"{name} still holds a placeholder value" in refused.stderr
        for name in ("STRIPE_WEBHOOK_SECRET", "SYSTEME_WEBHOOK_SECRET", "PARTNER_WEBHOOK_SECRET", "SIGNUP_FORM_TOKEN"):
            assert f"still holds a placeholder value (from ${{{name}}})" in refused.stderr
        (tmp_path / ".env").unlink()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "init_env.py"), ".env"], cwd=tmp_path, check=True)
        fresh = cli("check", cwd=tmp_path)
        assert fresh.returncode == 0, fresh.stdout
        settings = Settings(_env_file=tmp_path / ".env")
        assert settings.operators() and settings.metrics_token is not None  # /metrics is closed from the start


class TestRetentionDays:
    @pytest.mark.parametrize("value", ["0", "-1"])
    def test_less_than_a_day_is_refused_by_name(self, value):
        with pytest.raises(ValidationError, match="RETENTION_DAYS must be at least 1"):
            settings(retention_days=value)

    def test_one_day_is_accepted(self):
        assert settings(retention_days="1").retention_days == 1


class TestUrls:
    @pytest.mark.parametrize("name", ["systeme_api_url", "alert_webhook_url"])
    @pytest.mark.parametrize("value", ["api.systeme.io", "ftp://example.com", "http:///no-host"])
    def test_a_url_without_scheme_or_host_is_refused_without_echoing_it(self, name, value):
        with pytest.raises(ValidationError, match="is not an http\\(s\\) URL") as caught:
            settings(**{name: value})
        assert value not in str(caught.value)

    def test_an_empty_url_is_unset_and_a_whole_one_is_kept(self):
        assert settings(systeme_api_url="", alert_webhook_url=" ").systeme_api_url is None
        assert settings(systeme_api_url="http://127.0.0.1:8090").systeme_api_url == "http://127.0.0.1:8090"


class TestInvalidSettingsMessage:
    @pytest.mark.parametrize("command", [["check"], ["serve", "--port", "1"]])
    def test_the_cli_names_each_variable_where_it_is_set_and_not_its_value(self, tmp_path, command):
        shutil.copy(ROOT / "rules.yaml", tmp_path)
        (tmp_path / ".env").write_text("RETENTION_DAYS=zero\n")
        done = run_cli(*command, cwd=tmp_path, API_MAX_RPS="s3cr3t-value")
        assert done.returncode != 0
        assert "RETENTION_DAYS: should be a valid integer" in done.stderr
        assert "(set in .env)" in done.stderr
        assert "API_MAX_RPS: should be a valid integer" in done.stderr
        assert "(set in the environment)" in done.stderr
        assert "s3cr3t-value" not in done.stderr and "zero" not in done.stderr

    def test_a_message_that_names_its_variable_is_not_prefixed_again(self, tmp_path):
        done = run_cli("check", cwd=tmp_path, RETENTION_DAYS="0")
        assert "invalid settings: RETENTION_DAYS must be at least 1" in done.stderr


class TestInitEnv:
    """`scripts/init_env.py`, run by `make run` when .env is missing."""

    @staticmethod
    def init_env(folder: Path, target: str = ".env") -> dict[str, str]:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "init_env.py"), target], cwd=folder, check=True)
        assert (folder / target).stat().st_mode & 0o777 == 0o600
        return {k: v for k, v in dotenv_values(folder / target).items() if v is not None}

    def test_every_example_secret_gets_a_fresh_value_in_a_private_file(self, tmp_path):
        shutil.copy(ROOT / ".env.example", tmp_path)
        example = dotenv_values(tmp_path / ".env.example")
        first, second = self.init_env(tmp_path), self.init_env(tmp_path, ".env.other")
        assert {"ADMIN_TOKEN", "METRICS_TOKEN"} <= first.keys() and first.keys() == second.keys() == example.keys()
        for name, value in first.items():
            assert value != example[name] and value != second[name], name
            assert not is_placeholder(value) and len(value) >= 24, name

    def test_a_variable_named_like_a_secret_never_keeps_the_example_value(self, tmp_path):
        (tmp_path / ".env.example").write_text(
            "# NOT_SET_TOKEN=x\nNEW_TOKEN=changeme\nAPI_KEY=abc123\nLOG_FORMAT=json\n"
        )
        written = self.init_env(tmp_path)
        assert written["NEW_TOKEN"] != "changeme" and written["API_KEY"] != "abc123"
        assert written["LOG_FORMAT"] == "json" and "NOT_SET_TOKEN" not in written
