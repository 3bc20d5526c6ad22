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
    # A database URL, so that manage.py starts no embedded PostgreSQL first.
    env = _environment(
        SECRET_KEY="from-the-variable", SECRET_KEY_FILE=str(path),
        DATABASE_URL="postgres://db.invalid/x",
    )  # fmt: skip

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


# Quiet settings: importing them starts nothing and creates nothing.

PRINT_DATABASE_URL = "import json, monoenv_site.settings as s; print(json.dumps(s.DATABASE_URL))"


def _python(code: str, *, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def _postgres_serving(pgdata: Path) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


def test_importing_settings_starts_nothing_and_creates_nothing(tmp_path):
    data = tmp_path / "fresh"
    env = _environment(MONOENV_DATA_DIR=str(data))

    result = _python(PRINT_DATABASE_URL, env=env)

    assert result.returncode == 0, result.stderr
    assert not data.exists()
    assert not _postgres_serving(data / "pg")
    # Where pgserver will put its socket: in the data folder, which is short enough.
    assert _printed(result) == f"postgresql://postgres:@/postgres?host={data / 'pg'}"


def test_settings_find_the_running_server_in_its_postmaster_pid(tmp_path):
    pgdata = tmp_path / "data" / "pg"
    pgdata.mkdir(parents=True)
    # The eight lines PostgreSQL writes (pid, folder, start, port, socket folder, ...).
    lines = ["4242", str(pgdata), "1712346200", "5432", "/run/elsewhere", "", "1 2", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")

    result = _python(PRINT_DATABASE_URL, env=_environment(MONOENV_DATA_DIR=str(pgdata.parent)))

    assert _printed(result) == "postgresql://postgres:@/postgres?host=/run/elsewhere"


def test_a_data_folder_too_long_for_a_socket_predicts_pgservers_fallback(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # root has no XDG_RUNTIME_DIR
        import pgserver
        from pgserver.utils import find_suitable_socket_dir

    from monoenv_site import embedded

    base = tmp_path / ("long-" * 20)
    (base / "pg").mkdir(parents=True)
    # pgserver's own choice is the reference (it also makes that folder).
    chosen = find_suitable_socket_dir(base / "pg", pgserver.PostgresServer.runtime_path)

    assert chosen != base / "pg"
    assert embedded.expected_postgres_url(base) == (
        f"postgresql://postgres:@/postgres?host={chosen}"
    )


def test_manage_py_starts_the_embedded_postgres_and_another_shell_finds_it(tmp_path):
    from monoenv_site import embedded

    data = tmp_path / "data"
    env = _environment(MONOENV_DATA_DIR=str(data))
    predicted = _printed(_python(PRINT_DATABASE_URL, env=env))
    query = "from django.db import connection; print(connection.cursor().execute('SELECT 1').fetchone()[0])"  # noqa: E501
    try:
        first = manage("shell", "-c", query, env=env)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip().splitlines()[-1] == "1"
        [server] = _postgres_serving(data / "pg")

        second = manage("shell", "-c", query, env=env)

        assert second.returncode == 0, second.stderr
        assert _postgres_serving(data / "pg") == [server]  # attached, not another one
        # What settings predicted before the server existed is where it listens.
        assert embedded.postgres_url(data) == predicted
    finally:
        embedded.stop_postgres(data)
    assert not _postgres_serving(data / "pg")


@pytest.mark.parametrize("value", ["ture", "2", "enabled", "nope"])
def test_a_boolean_it_does_not_understand_is_refused(monkeypatch, value):
    from django.core.exceptions import ImproperlyConfigured

    from monoenv_site.env import envbool

    monkeypatch.setenv("MONOENV_FLAG", value)

    with pytest.raises(ImproperlyConfigured, match="MONOENV_FLAG"):
        envbool("MONOENV_FLAG", False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
     ("0", False), ("False", False), ("no", False), ("off", False), ("", True)],
)  # fmt: skip
def test_a_boolean_reads_the_usual_words(monkeypatch, value, expected):
    from monoenv_site.env import envbool

    monkeypatch.setenv("MONOENV_FLAG", value)

    assert envbool("MONOENV_FLAG", True) is expected


def test_a_mistyped_boolean_stops_the_start(tmp_path):
    # A database URL, so that manage.py starts no embedded PostgreSQL first.
    env = _environment(
        DEBUG="ture", MONOENV_DATA_DIR=str(tmp_path), DATABASE_URL="postgres://db.invalid/x"
    )

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "DEBUG='ture' is not a boolean" in result.stderr
