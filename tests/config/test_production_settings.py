"""Production settings refuse to be unsafe: each bad value stops start-up with one line naming it,
and a correct production configuration passes `check --deploy` with nothing to report."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = secrets.token_urlsafe(50)


def production_env(**overrides: str | None) -> dict[str, str]:
    """The environment of a production box: the test run's services, a real key, a host name."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "BOTFLOW_EMBEDDED", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(
        BOTFLOW_ENV="production",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="botflow.example.com",
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is required in production"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is required in production"),
        (
            {"SECRET_KEY": "botflow-insecure-development-key-change-me"},
            "SECRET_KEY is a public development key",
        ),
        ({"SECRET_KEY": "django-insecure-" + "x1y2z3" * 10}, "SECRET_KEY is a public development"),
        ({"SECRET_KEY": "short-but-secret"}, "SECRET_KEY is too weak (16 characters)"),
        ({"DATABASE_URL": None}, "DATABASE_URL is required"),
        ({"REDIS_URL": ""}, "REDIS_URL is required"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS is required in production"),
        ({"ALLOWED_HOSTS": " , "}, "ALLOWED_HOSTS is required in production"),
        ({"DEBUG": "true"}, "DEBUG must be false in production"),
        ({"BOTFLOW_ENV": None, "DEBUG": "true"}, "DEBUG must be false in production"),
        ({"BOTFLOW_ENV": "staging"}, "BOTFLOW_ENV must be one of production/development/test"),
        # production is the default, and DEBUG=false said out loud means production too
        ({"BOTFLOW_ENV": None, "SECRET_KEY": None}, "SECRET_KEY is required in production"),
        (
            {"BOTFLOW_ENV": "development", "DEBUG": "false", "SECRET_KEY": None},
            "SECRET_KEY is required in production",
        ),
    ],
)
def test_it_refuses_an_unsafe_production_setting_in_one_line_naming_it(overrides, line):
    result = manage(production_env(**overrides), "check")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {line}")


def test_it_does_not_start_an_embedded_database_when_database_url_is_missing(tmp_path):
    env = production_env(DATABASE_URL=None, BOTFLOW_DATA_DIR=str(tmp_path))

    result = manage(env, "check")

    assert result.stderr.strip() == (
        "configuration error: DATABASE_URL is required"
        " (BOTFLOW_EMBEDDED=1 starts an embedded one instead)"
    )
    assert list(tmp_path.iterdir()) == []  # no PostgreSQL was initialised


def test_it_starts_in_development_with_the_development_defaults():
    env = production_env(BOTFLOW_ENV="development", SECRET_KEY=None, ALLOWED_HOSTS=None)

    result = manage(env, "check")

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_it_passes_the_deploy_check_with_production_settings():
    result = manage(production_env(), "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_sends_hsts_and_secure_cookies_over_https_and_redirects_plain_http():
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, hasattr(s, 'SECURE_PROXY_SSL_HEADER') "
        "and s.SECURE_PROXY_SSL_HEADER is not None)"
    )
    env = {**production_env(), "DJANGO_SETTINGS_MODULE": "config.settings"}

    def settings_with(**overrides):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**env, **overrides},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert settings_with() == ["31536000", "True", "True", "True", "False"]
    assert settings_with(BOTFLOW_HTTPS="false") == ["0", "False", "False", "False", "False"]
    assert settings_with(TRUST_X_FORWARDED_PROTO="true")[-1] == "True"
