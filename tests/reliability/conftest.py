import itertools
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.sdk_load import Load
from tests.reliability.harness import Postgres, Redis, Stack, manage

TEMPLATE = "monoenv_template"
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    """One embedded PostgreSQL for the folder, with a migrated template database.

    Not under pytest's temporary directory: pytest makes its root private
    again at every session start, and PostgreSQL runs as another user when
    started by root.
    """
    base = Path(tempfile.mkdtemp(prefix="monoenv-reliability-"))
    base.chmod(0o755)
    server = Postgres(base)
    server.start()
    try:
        with server.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        stack = Stack(server.base, server.url(TEMPLATE), "redis+socket:///nonexistent")
        manage(stack.env(), "migrate", "--noinput")
        token = (
            manage(stack.env(), "create_token", "--name", "reliability", "--scopes", "ingest,read")
            .strip()
            .splitlines()[-1]
        )
        server.token = token
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(postgres) -> str:
    """A fresh copy of the template for one test; returns its name."""
    name = f"reliability_{next(_databases)}"
    if not postgres.running():
        postgres.start()
    with postgres.connect("postgres") as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return name


@pytest.fixture
def redis(tmp_path):
    server = Redis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(tmp_path, postgres, database):
    """Monoenv's processes on this test's database; started by the test, always killed."""
    stack = Stack(tmp_path, postgres.url(database), "redis+socket:///nonexistent")
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture
def load():
    running = Load()
    try:
        yield running
    finally:
        running.kill()
