"""Secrets from the environment or a *_FILE, and `check --deploy` under production settings."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ["SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MONOENV_GITHUB_WEBHOOK_SECRET"]
PRINT_SECRETS = (
    "import json; from django.conf import settings; "
    f"print(json.dumps({{name: getattr(settings, name) for name in {SECRETS!r}}}))"
)


def _environment(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.endswith("_FILE")}
    env.pop("MONOENV_PRODUCTION", None)
    env.update(overrides)
    return env


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _printed(result: subprocess.CompletedProcess) -> dict:
    # `shell` first reports the objects it imported.
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_secret_can_come_from_a_file(tmp_path):
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://monoenv:from-a-file@db.internal:5432/monoenv",
        "CELERY_BROKER_URL": "redis://:from-a-file@broker.internal:6379/0",
        "MONOENV_GITHUB_WEBHOOK_SECRET": "hmac-from-a-file",
    }
    files = {}
    for name, value in values.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")  # as `docker secret` and editors leave them
        files[f"{name}_FILE"] = str(path)

    result = manage("shell", "-c", PRINT_SECRETS, env=_environment(**files))

    assert result.returncode == 0, result.stderr
    assert _printed(result) == values


def test_the_file_wins_over_the_variable(tmp_path):
    path = tmp_path / "key"
    path.write_text("from-the-file")
    env = _environment(SECRET_KEY="from-the-variable", SECRET_KEY_FILE=str(path))

    result = manage("shell", "-c", PRINT_SECRETS, env=env)

    assert _printed(result)["SECRET_KEY"] == "from-the-file"


def _production(**overrides: str) -> dict:
    return _environment(
        MONOENV_PRODUCTION="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        ALLOWED_HOSTS="monoenv.example.com",
        CSRF_TRUSTED_ORIGINS="https://monoenv.example.com",
        **overrides,
    )


def test_check_deploy_is_clean_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=_production())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "warning"),
    [({"DEBUG": "1"}, "security.W018"), ({"SECURE_HSTS_SECONDS": "0"}, "security.W004")],
)
def test_check_deploy_does_catch_an_unsafe_setting(overrides, warning):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=_production(**overrides))

    assert result.returncode != 0
    assert warning in result.stderr


def test_production_has_no_default_secret_key():
    env = _production()
    del env["SECRET_KEY"]

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
