"""`make run`: the whole Monoenv stack in one terminal.

Uses the embedded PostgreSQL and Redis unless DATABASE_URL and
CELERY_BROKER_URL name real ones, migrates, makes sure an admin, an ingest
token and a CI token exist, then runs web, gRPC ingest, Celery worker and beat
(and the embedded Redis, and the demo) under one honcho supervisor. Ctrl-C or
SIGTERM stops it all in order: the processes that use Redis and PostgreSQL
first, then Redis, then PostgreSQL.

The demo (demo/simulator.py) runs on the embedded default only, unless
MONOENV_DEMO=1 asks for it; MONOENV_DEMO=0 turns it off.

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

from monoenv_site import embedded, env

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GRACEFUL_TIMEOUT = 10
ADMIN_USERNAME = "admin"
# The token pasted into every service may only send telemetry; CI gets its own.
INGEST_TOKEN = ("local-ingest", ["ingest"], "ingest-token.txt")
CI_TOKEN = ("local-ci", ["deploy", "read"], "ci-token.txt")
# The demo's stand-in for the on-call person confirms its incidents (demo/simulator.py).
DEMO_RESPONDER_TOKEN = ("local-demo-responder", ["read", "incident"], "demo-responder-token.txt")
# Stopped last, once every process that talks to them has exited.
INFRASTRUCTURE = ("redis",)
# Signalled in their main process only (systemd's KillMode=mixed, as Celery's docs
# advise): the worker then lets its pool finish its tasks, where a signal to the
# whole process group would kill them mid-task (WorkerLostError).
MAIN_PROCESS_ONLY = ("worker",)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["wait-redis"]:
        return 0 if wait_for_redis(Path(argv[1])) else 1
    if argv[:1] == ["wait-port"]:
        return 0 if wait_for_port(int(argv[1])) else 1
    if argv[:1] == ["wait-file"]:
        wait_for_file(Path(argv[1]))
        return 0  # late is better than never: the workers start either way

    # Until honcho installs its own handlers, SIGTERM must unwind like Ctrl-C
    # so that the `finally` below still stops the PostgreSQL we started.
    signal.signal(signal.SIGTERM, _interrupt)
    base = data_dir()
    own_postgres = not env.is_set("DATABASE_URL")
    try:
        if own_postgres:
            print(f"Starting the embedded PostgreSQL in {base / 'pg'} ...", flush=True)
            os.environ["DATABASE_URL"] = start_postgres(base)
        own_redis = not env.is_set("CELERY_BROKER_URL")
        if own_redis:
            os.environ["CELERY_BROKER_URL"] = embedded.redis_url(base)
        settings = setup_django()
        admin_note = ensure_admin(base, settings.MONOENV_PUBLIC_URL)
        ingest_token = ensure_token(base, *INGEST_TOKEN)
        ci_token = ensure_token(base, *CI_TOKEN)
        demo = wants_demo(embedded_database=own_postgres)
        if demo:
            ensure_token(base, *DEMO_RESPONDER_TOKEN)
        manager = build_manager(settings, base, own_redis, demo=demo)
        print_banner(settings, admin_note, ingest_token, ci_token, demo=demo)
        return supervise(manager)
    except KeyboardInterrupt:
        return 130
    finally:
        if own_postgres:
            stop_postgres(base)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def data_dir() -> Path:
    base = embedded.data_dir()
    embedded.prepare_data_dir(base)
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


def wait_for_file(path: Path, timeout: float = 600) -> bool:
    """Wait until this file exists (the demo's backfill is in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.5)
    print(f"{path} did not appear within {timeout:.0f} s; starting anyway", file=sys.stderr)
    return False


def backfilled_marker(base: Path) -> Path:
    return base / "demo-backfilled"


def wants_demo(*, embedded_database: bool) -> bool:
    """Whether to stream the demo: MONOENV_DEMO decides when set; else the embedded
    default does, until a service of the user's own has sent spans.

    A database named by DATABASE_URL is taken for production: it never gets fake
    services and deploys unless MONOENV_DEMO=1 asks for them.
    """
    from telemetry import demo, spans

    if env.envstr("MONOENV_DEMO").strip():
        return env.envbool("MONOENV_DEMO", False)
    if not embedded_database:
        return False
    return all(demo.is_demo(service) for service in spans.known_services())


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


def ensure_token(base: Path, name: str, scopes: list[str], file_name: str) -> str:
    """The stored token if it still works with exactly these scopes; else a new one, stored.

    A stored token with other scopes (an older stack's ingest token carried all
    three) is revoked, not just forgotten.
    """
    from telemetry.models import ApiToken

    token_file = base / file_name
    if token_file.exists():
        raw = token_file.read_text().strip()
        stored = ApiToken.objects.active().filter(token_hash=ApiToken.hash(raw)).first()
        if stored is not None and sorted(stored.scopes) == sorted(scopes):
            return raw
        if stored is not None:
            stored.revoke()
    _, raw = ApiToken.issue(name=name, scopes=scopes)
    write_secret(token_file, raw)
    return raw


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # O_CREAT's mode does not apply to a file that already existed.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def build_manager(settings, base: Path, own_redis: bool, *, demo: bool) -> Manager:
    from django.db import connections

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
    waits = [celery_prefix] if celery_prefix else []
    if demo:
        # The demo backfills half an hour of traffic, deploys included, in a
        # minute or two. Judged before that traffic is in, each deploy would
        # look silent (a throughput drop), so the worker and beat wait for it.
        marker = backfilled_marker(base)
        marker.unlink(missing_ok=True)
        waits.append([PYTHON, "-m", "monoenv_site.launcher", "wait-file", str(marker)])
    for name, cmd in commands(settings, base).items():
        if name in ("worker", "beat") and waits:
            line = " && ".join([*map(shlex.join, waits), f"exec {shlex.join(cmd)}"])
        else:
            line = shlex.join(["exec", *cmd])
        manager.add_process(name, line, env=env, cwd=str(ROOT))
    if demo:
        manager.add_process("demo", demo_line(settings, base), env=env, cwd=str(ROOT))
    return manager


def demo_line(settings, base: Path) -> str:
    # The simulator posts deploys to the web process, so it waits for it.
    wait = [PYTHON, "-m", "monoenv_site.launcher", "wait-port", str(settings.MONOENV_HTTP_PORT)]
    simulate = [
        PYTHON, "manage.py", "simulate",
        "--endpoint", f"http://127.0.0.1:{settings.MONOENV_OTLP_HTTP_PORT}",
        "--api", f"http://127.0.0.1:{settings.MONOENV_HTTP_PORT}",
        "--ready-file", str(backfilled_marker(base)),
    ]  # fmt: skip
    return f"{shlex.join(wait)} && exec {shlex.join(simulate)}"


def commands(settings, base: Path) -> dict[str, list[str]]:
    celery = [PYTHON, "-m", "celery", "-A", "monoenv_site"]
    servers = {"otlp": otlp_command(settings, base)}
    if settings.MONOENV_HTTP_PORT != settings.MONOENV_OTLP_HTTP_PORT:
        servers["web"] = web_command(settings, base)
    return {
        **servers,
        "grpc": [PYTHON, "manage.py", "otlp_grpc", "--port", str(settings.MONOENV_OTLP_GRPC_PORT)],
        "worker": [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "-s", str(base / "celerybeat-schedule")],
    }


def web_command(settings, base: Path) -> list[str]:
    """The dashboard and API port: Django under gunicorn's threaded workers."""
    cmd = [PYTHON, "-m", "gunicorn", "monoenv_site.wsgi:application"]
    cmd += ["--bind", f"0.0.0.0:{settings.MONOENV_HTTP_PORT}"]
    cmd += [
        "--worker-class", "gthread",
        "--workers", os.environ.get("MONOENV_WEB_WORKERS", "2"),
        "--threads", os.environ.get("MONOENV_WEB_THREADS", "4"),
    ]  # fmt: skip
    return cmd + _gunicorn_options(base, "gunicorn.ctl")


def otlp_command(settings, base: Path) -> list[str]:
    """The OTLP/HTTP port: event-loop workers, so slow clients hold no thread.

    With one port for both, it serves the dashboard too (telemetry/asgi.py).
    """
    cmd = [PYTHON, "-m", "gunicorn", "monoenv_site.otlp_asgi:application"]
    cmd += ["--bind", f"0.0.0.0:{settings.MONOENV_OTLP_HTTP_PORT}"]
    cmd += [
        "--worker-class", "telemetry.http_server.OtlpWorker",
        "--workers", os.environ.get("MONOENV_OTLP_WORKERS", "2"),
        # A worker forked from a loaded master serves at once: one killed
        # mid-request is replaced before its exporter's retry comes.
        "--preload",
    ]  # fmt: skip
    return cmd + _gunicorn_options(base, "gunicorn-otlp.ctl")


def _gunicorn_options(base: Path, control_socket: str) -> list[str]:
    options = ["--graceful-timeout", str(GRACEFUL_TIMEOUT)]
    if gunicorn.version_info >= (25, 1):
        # Its default is one path per user: two stacks would fight over it.
        options += ["--control-socket", str(base / control_socket)]
    if os.environ.get("MONOENV_WEB_ACCESS_LOG", "").lower() in ("1", "true", "yes", "on"):
        options += ["--access-logfile", "-"]
    return options


def print_banner(settings, admin_note: str, ingest_token: str, ci_token: str, *, demo: bool):
    header = f"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20{ingest_token}"
    data = settings.MONOENV_DATA_DIR
    demo_note = (
        "The demo streams made-up services named demo-* (MONOENV_DEMO=0 turns it off;\n"
        "`python manage.py clear_demo` removes their data)."
        if demo
        else "No demo is running (MONOENV_DEMO=1 starts one)."
    )
    print(
        f"""
Monoenv is starting.

Dashboard: {settings.MONOENV_PUBLIC_URL}/
Admin:     {admin_note}

Point a service at it over OTLP/HTTP by setting:

OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{settings.MONOENV_OTLP_HTTP_PORT}
OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
{header}

or over gRPC (port {settings.MONOENV_OTLP_GRPC_PORT}) with:

OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{settings.MONOENV_OTLP_GRPC_PORT}
OTEL_EXPORTER_OTLP_PROTOCOL=grpc
{header}

That token may only send telemetry (kept in {data / INGEST_TOKEN[2]}).
For CI (deploys, the gate and reads) use this one, kept in {data / CI_TOKEN[2]}:

MONOENV_TOKEN={ci_token}

{demo_note} Ctrl-C stops everything.
""",
        flush=True,
    )


class Supervisor(Manager):
    """honcho's Manager, stopping in order and safe against an early signal.

    honcho signals every process at once; Redis would then go while the worker
    and beat still talk to it, and they print a traceback per lost connection.
    So the infrastructure (Redis) is signalled only once everything else has
    exited; PostgreSQL is stopped after the supervisor returns.

    honcho signals every process by the pid it reported; one that has not yet
    reported would crash the manager and leave the others running on their own.
    """

    _signalled_early = False
    _infrastructure_signalled = False

    def _killall(self, force=False):
        running = [p for p in self._processes.values() if "returncode" not in p]
        self._signalled_early = any("pid" not in p for p in running)
        if self._signalled_early:
            # Let the main loop call terminate() again once all have started.
            self._terminating = False
        users_running = self._running(infrastructure=False)
        for name, p in self._processes.items():
            if "returncode" in p or "pid" not in p:
                continue
            if name in INFRASTRUCTURE and users_running and not force:
                continue  # signalled by _all_stopped() once the others are gone
            self._signal(name, p, force=force)

    def _signal(self, name: str, p: dict, *, force: bool) -> None:
        if name in INFRASTRUCTURE:
            self._infrastructure_signalled = True
        signame = "SIGKILL" if force else "SIGTERM"
        self._system_print(f"sending {signame} to {name} (pid {p['pid']})\n")
        if force:
            self._procmgr.kill(p["pid"])
        elif name in MAIN_PROCESS_ONLY:
            _signal_process(p["pid"], signal.SIGTERM)
        else:
            self._procmgr.terminate(p["pid"])

    def _running(self, *, infrastructure: bool) -> list[str]:
        return [
            name
            for name, p in self._processes.items()
            if "returncode" not in p and (name in INFRASTRUCTURE) == infrastructure
        ]

    def _all_stopped(self):
        # honcho's loop asks this on every turn: the moment to stop Redis.
        if self._terminating and not self._infrastructure_signalled:
            if not self._running(infrastructure=False):
                for name in self._running(infrastructure=True):
                    if "pid" in self._processes[name]:
                        self._signal(name, self._processes[name], force=False)
        return super()._all_stopped()

    def _any_stopped(self):
        # The main loop terminates everything once all started and any stopped.
        return self._signalled_early or super()._any_stopped()


def _signal_process(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it has just exited


def supervise(manager: Manager) -> int:
    # honcho kills what is still running this long after the first SIGTERM;
    # give gunicorn its whole graceful timeout first, and Redis a moment after it.
    honcho_manager.KILL_WAIT = GRACEFUL_TIMEOUT + 5
    manager.loop()
    if manager.returncode in (-signal.SIGINT, -signal.SIGTERM, 130, 143):
        return 0  # Ctrl-C or SIGTERM asked for this stop: a clean exit.
    return 1 if manager.returncode is None else manager.returncode


if __name__ == "__main__":
    sys.exit(main())
