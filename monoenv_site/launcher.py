"""`make run`: the whole Monoenv stack in one terminal.

Uses the embedded PostgreSQL and Redis unless DATABASE_URL and
CELERY_BROKER_URL name real ones, migrates, makes sure an admin and an ingest
token exist, then runs web, gRPC ingest, Celery worker and beat (and the
embedded Redis) under one honcho supervisor. Ctrl-C or SIGTERM stops it all.

Django settings are imported only once DATABASE_URL and CELERY_BROKER_URL are
decided, because settings.py reads them at import time.
"""

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gunicorn
from honcho import manager as honcho_manager
from honcho.manager import Manager
from honcho.printer import Printer

from monoenv_site import embedded

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GRACEFUL_TIMEOUT = 10
ADMIN_USERNAME = "admin"
TOKEN_NAME = "local-ingest"
TOKEN_SCOPES = ["ingest", "read", "deploy"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["wait-redis"]:
        return 0 if wait_for_redis(Path(argv[1])) else 1
    if argv[:1] == ["wait-port"]:
        return 0 if wait_for_port(int(argv[1])) else 1

    # Until honcho installs its own handlers, SIGTERM must unwind like Ctrl-C
    # so that the `finally` below still stops the PostgreSQL we started.
    signal.signal(signal.SIGTERM, _interrupt)
    base = data_dir()
    own_postgres = not env_set("DATABASE_URL")
    try:
        if own_postgres:
            print(f"Starting the embedded PostgreSQL in {base / 'pg'} ...", flush=True)
            os.environ["DATABASE_URL"] = start_postgres(base)
        own_redis = not env_set("CELERY_BROKER_URL")
        if own_redis:
            os.environ["CELERY_BROKER_URL"] = embedded.redis_url(base)
        settings = setup_django()
        admin_note = ensure_admin(base, settings.MONOENV_PUBLIC_URL)
        token = ensure_ingest_token(base)
        manager = build_manager(settings, base, own_redis)
        print_banner(settings, admin_note, token)
        return supervise(manager)
    except KeyboardInterrupt:
        return 130
    finally:
        if own_postgres:
            stop_postgres(base)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def env_set(name: str) -> bool:
    # settings.py also accepts NAME_FILE for secrets.
    return bool(os.environ.get(name) or os.environ.get(f"{name}_FILE"))


def data_dir() -> Path:
    base = embedded.data_dir(os.environ.get("MONOENV_DATA_DIR") or str(ROOT / ".monoenv"))
    # Children must agree on it, or they would look for another embedded server.
    os.environ["MONOENV_DATA_DIR"] = str(base)
    return base


def start_postgres(base: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL and return its URL.

    Asked from a child process: pgserver keeps a handle in the asking process
    that never stops the server, which would make stop_postgres() a no-op here.
    """
    code = (
        "import sys; from pathlib import Path; from monoenv_site import embedded; "
        "print(embedded.postgres_url(Path(sys.argv[1])))"
    )
    result = subprocess.run(
        [PYTHON, "-c", code, str(base)], cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True
    )
    return result.stdout.strip().splitlines()[-1]


def stop_postgres(base: Path) -> None:
    # pgserver leaves the server running while another live process (say a
    # `manage.py shell` in another terminal) still holds a handle on it.
    embedded.stop_postgres(base)
    if (base / "pg" / "postmaster.pid").exists():
        print("The embedded PostgreSQL is still in use by another process; left running.")
    else:
        print("Stopped the embedded PostgreSQL.")


def wait_for_redis(sock: Path, timeout: float = 60) -> bool:
    """Wait until the Redis on this unix socket answers PING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(1)
                conn.connect(str(sock))
                conn.sendall(b"PING\r\n")
                # "-LOADING" while it replays its append-only file: not ready yet.
                if conn.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    print(f"Redis did not answer on {sock} within {timeout:.0f} s", file=sys.stderr)
    return False


def wait_for_port(port: int, timeout: float = 120) -> bool:
    """Wait until something accepts connections on this local port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    print(f"Nothing listened on port {port} within {timeout:.0f} s", file=sys.stderr)
    return False


def wants_demo() -> bool:
    """Stream the simulator while the database holds no spans, unless MONOENV_DEMO=0."""
    from telemetry.models import ServiceDay

    if os.environ.get("MONOENV_DEMO", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not ServiceDay.objects.exists()


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=1)
    return settings


def ensure_admin(base: Path, public_url: str) -> str:
    """Make sure a superuser exists; return how to log in, for the banner."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    login = f"{public_url}/admin/"
    password_file = base / "admin-password.txt"
    if users.filter(is_superuser=True).exists():
        if password_file.exists():
            return f"{login}  user {ADMIN_USERNAME}, password in {password_file}"
        return f"{login}  (log in as your superuser)"
    password = secrets.token_urlsafe(12)
    user, _ = users.get_or_create(username=ADMIN_USERNAME)
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    write_secret(password_file, password)
    return (
        f"{login}\n  user:     {ADMIN_USERNAME}\n  password: {password}"
        f"  (shown once; kept in {password_file})"
    )


def ensure_ingest_token(base: Path) -> str:
    """Return the local stack's token, issuing one unless the stored one still works."""
    from telemetry.models import ApiToken

    token_file = base / "ingest-token.txt"
    if token_file.exists():
        raw = token_file.read_text().strip()
        if ApiToken.objects.active().filter(token_hash=ApiToken.hash(raw)).exists():
            return raw
    _, raw = ApiToken.issue(name=TOKEN_NAME, scopes=TOKEN_SCOPES)
    write_secret(token_file, raw)
    return raw


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # O_CREAT's mode does not apply to a file that already existed.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def build_manager(settings, base: Path, own_redis: bool) -> Manager:
    from django.db import connections

    demo = wants_demo()
    # The supervisor forks; no child should share the setup's connection.
    connections.close_all()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    manager = Supervisor(printer=Printer(sys.stdout))
    celery_prefix = []
    if own_redis:
        sock = embedded.redis_socket(base)
        manager.add_process("redis", shlex.join(["exec", *embedded.redis_command(base)]), env=env)
        # Celery gives up on a broker that is not there yet; wait for it.
        celery_prefix = [PYTHON, "-m", "monoenv_site.launcher", "wait-redis", str(sock)]
    for name, cmd in commands(settings, base).items():
        if name in ("worker", "beat") and celery_prefix:
            line = f"{shlex.join(celery_prefix)} && exec {shlex.join(cmd)}"
        else:
            line = shlex.join(["exec", *cmd])
        manager.add_process(name, line, env=env, cwd=str(ROOT))
    if demo:
        manager.add_process("demo", demo_line(settings), env=env, cwd=str(ROOT))
    return manager


def demo_line(settings) -> str:
    # The simulator posts deploys to the web process, so it waits for it.
    wait = [PYTHON, "-m", "monoenv_site.launcher", "wait-port", str(settings.MONOENV_HTTP_PORT)]
    simulate = [
        PYTHON, "manage.py", "simulate",
        "--endpoint", f"http://127.0.0.1:{settings.MONOENV_OTLP_HTTP_PORT}",
        "--api", f"http://127.0.0.1:{settings.MONOENV_HTTP_PORT}",
    ]  # fmt: skip
    return f"{shlex.join(wait)} && exec {shlex.join(simulate)}"


def commands(settings, base: Path) -> dict[str, list[str]]:
    celery = [PYTHON, "-m", "celery", "-A", "monoenv_site"]
    return {
        "web": web_command(settings, base),
        "grpc": [PYTHON, "manage.py", "otlp_grpc", "--port", str(settings.MONOENV_OTLP_GRPC_PORT)],
        "worker": [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "-s", str(base / "celerybeat-schedule")],
    }


def web_command(settings, base: Path) -> list[str]:
    ports = dict.fromkeys([settings.MONOENV_HTTP_PORT, settings.MONOENV_OTLP_HTTP_PORT])
    cmd = [PYTHON, "-m", "gunicorn", "monoenv_site.wsgi:application"]
    for port in ports:
        cmd += ["--bind", f"0.0.0.0:{port}"]
    cmd += [
        "--worker-class", "gthread",
        "--workers", os.environ.get("MONOENV_WEB_WORKERS", "2"),
        "--threads", os.environ.get("MONOENV_WEB_THREADS", "4"),
        "--graceful-timeout", str(GRACEFUL_TIMEOUT),
    ]  # fmt: skip
    if gunicorn.version_info >= (25, 1):
        # Its default is one path per user: two stacks would fight over it.
        cmd += ["--control-socket", str(base / "gunicorn.ctl")]
    if os.environ.get("MONOENV_WEB_ACCESS_LOG", "").lower() in ("1", "true", "yes", "on"):
        cmd += ["--access-logfile", "-"]
    return cmd


def print_banner(settings, admin_note: str, token: str) -> None:
    header = f"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20{token}"
    print(
        f"""
Monoenv is starting.

Dashboard: {settings.MONOENV_PUBLIC_URL}/
Admin:     {admin_note}

Point a service at it over OTLP/HTTP by setting:

OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{settings.MONOENV_OTLP_HTTP_PORT}
{header}

Python's SDK defaults to gRPC: either add OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
to the lines above, or send over gRPC with:

OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{settings.MONOENV_OTLP_GRPC_PORT}
OTEL_EXPORTER_OTLP_PROTOCOL=grpc
{header}

The token is kept in {settings.MONOENV_DATA_DIR / "ingest-token.txt"}. Ctrl-C stops everything.
""",
        flush=True,
    )


class Supervisor(Manager):
    """honcho's Manager, safe against a signal that comes while processes start.

    honcho signals every process by the pid it reported; one that has not yet
    reported would crash the manager and leave the others running on their own.
    """

    _signalled_early = False

    def _killall(self, force=False):
        running = [p for p in self._processes.values() if "returncode" not in p]
        self._signalled_early = any("pid" not in p for p in running)
        if self._signalled_early:
            # Let the main loop call terminate() again once all have started.
            self._terminating = False
        for name, p in self._processes.items():
            if "returncode" in p or "pid" not in p:
                continue
            signame = "SIGKILL" if force else "SIGTERM"
            self._system_print(f"sending {signame} to {name} (pid {p['pid']})\n")
            (self._procmgr.kill if force else self._procmgr.terminate)(p["pid"])

    def _any_stopped(self):
        # The main loop terminates everything once all started and any stopped.
        return self._signalled_early or super()._any_stopped()


def supervise(manager: Manager) -> int:
    # honcho kills what is still running this long after the first SIGTERM;
    # give gunicorn its whole graceful timeout first.
    honcho_manager.KILL_WAIT = GRACEFUL_TIMEOUT + 2
    manager.loop()
    if manager.returncode in (-signal.SIGINT, -signal.SIGTERM, 130, 143):
        return 0  # Ctrl-C or SIGTERM asked for this stop: a clean exit.
    return 1 if manager.returncode is None else manager.returncode


if __name__ == "__main__":
    sys.exit(main())
