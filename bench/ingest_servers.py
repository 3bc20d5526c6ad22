"""OTLP/HTTP servers against slow clients, a database outage, and the ingest ceiling.

A benchmark, not a test: it prints figures, in one run, on one machine.

    .venv/bin/python bench/ingest_servers.py                      # embedded PostgreSQL
    .venv/bin/python bench/ingest_servers.py --database-url postgres://...  # an external one

1. For each server option (gthread, the one used before; uvicorn workers under
   gunicorn, the one used now; gunicorn's own asyncio ASGI worker; granian,
   when installed, with the same ASGI application): healthy
   exporters' throughput and request p99, idle and with --slow connections
   open that trickle their headers a byte a second or stall mid-body; and the
   servers' peak RSS.
2. The code before (--before-rev, run from a temporary worktree) and after,
   end to end, against the in-process decode-and-COPY ceiling with as many
   concurrent stores as the server uses (workers x MONOENV_INGEST_CONCURRENCY).
3. On the embedded PostgreSQL only (it is stopped and started): throughput
   while the spool absorbs a --outage-seconds outage, and how long the replay
   takes once the database is back.

Each option runs its own server on a fresh database (a copy of a migrated
template), so the rollup backlog of one run does not slow the next.
"""

import argparse
import asyncio
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import build_payloads  # noqa: E402
from tests.reliability.harness import PYTHON, Postgres, free_port, listening  # noqa: E402

WORKERS = 2
TEMPLATE = "bench_servers_template"
SLOW_HEADERS = (
    b"POST /v1/traces HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-protobuf\r\n"
)


def option_command(option: str, port: int) -> list[str]:
    bind = ["--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
            "--control-socket", f"/tmp/monoenv-bench-{port}.ctl"]  # fmt: skip
    gunicorn = [PYTHON, "-m", "gunicorn"]
    if option in ("gthread", "before"):
        return [*gunicorn, "monoenv_site.wsgi:application", *bind, "--worker-class", "gthread",
                "--threads", "4"]  # fmt: skip
    if option == "uvicorn":
        return [*gunicorn, "monoenv_site.otlp_asgi:application", *bind, "--preload",
                "--worker-class", "telemetry.http_server.OtlpWorker"]  # fmt: skip
    if option == "granian":
        # Rust's hyper reads the requests; not a dependency: `pip install granian` to try it.
        return [str(Path(PYTHON).parent / "granian"), "--interface", "asgi", "--host",
                "127.0.0.1", "--port", str(port), "--workers", str(WORKERS), "--http", "1",
                "--http1-header-read-timeout", "10000",
                "monoenv_site.otlp_asgi:application"]  # fmt: skip
    if option == "gunicorn-asgi":
        return [*gunicorn, "monoenv_site.otlp_asgi:application", *bind, "--preload",
                "--worker-class", "gunicorn.workers.gasgi.ASGIWorker"]  # fmt: skip
    raise ValueError(option)


@dataclass
class Database:
    """Fresh databases copied from a migrated template, on one server."""

    admin_url: str  # a URL to the server's maintenance database
    url_for: object  # name -> URL
    token: str = ""
    counter: int = 0
    created: list = field(default_factory=list)

    def drop_all(self) -> None:
        """Drop what this run created (an external server keeps nothing of it)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in [*self.created, TEMPLATE]:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def fresh(self) -> str:
        self.counter += 1
        name = f"bench_servers_{os.getpid()}_{self.counter}"
        self.created.append(name)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url_for(name)

    def prepare(self, data_dir: Path) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        env = server_env(self.url_for(TEMPLATE), data_dir)
        manage(env, "migrate", "--noinput")
        output = manage(env, "create_token", "--name", "bench", "--scopes", "ingest")
        self.token = output.strip().splitlines()[-1]


def server_env(database_url: str, data_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY"))}
    env.update(DATABASE_URL=database_url, MONOENV_DATA_DIR=str(data_dir),
               MONOENV_TOKEN_RATE_LIMIT="0", PYTHONUNBUFFERED="1",
               CELERY_BROKER_URL="redis+socket:///nonexistent", **extra)  # fmt: skip
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    if result.returncode:
        raise RuntimeError(result.stdout + result.stderr)
    return result.stdout


class Server:
    def __init__(self, option: str, env: dict, log: Path, cwd: Path = REPO):
        self.port = free_port()
        self.log = log
        self.spool = Path(env["MONOENV_DATA_DIR"]) / "spool"
        self.database_url = env["DATABASE_URL"]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(option_command(option, self.port), cwd=cwd, env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.2)

    def _answers(self) -> bool:
        if not listening(self.port):
            return False
        import requests

        try:
            return requests.get(self.url, timeout=5).status_code == 405
        except requests.RequestException:
            return False

    def warm_up(self, token: str, batch: int) -> None:
        """A few seconds of load, not counted: every worker booted, connections made."""
        healthy_load(self, token, clients=WORKERS * 2, seconds=3, batch=batch, seed=999)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def rss_bytes(self) -> int:
        total = 0
        try:
            parent = psutil.Process(self.proc.pid)
            for proc in [parent, *parent.children(recursive=True)]:
                total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
        return total

    def replayed_batches(self) -> int:
        """Batches the server's replayers stored so far, as its log says."""
        text = self.log.read_text(errors="replace")
        return sum(int(count) for count in re.findall(r"Replayed (\d+) spooled batch", text))

    def cpu_seconds(self) -> float:
        """CPU seconds of the server's live processes so far."""
        try:
            parent = psutil.Process(self.proc.pid)
            return sum(_process_cpu(proc.pid) for proc in [parent, *parent.children(True)])
        except psutil.NoSuchProcess:
            return 0.0

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


async def _slow_connection(port: int, index: int) -> None:
    """Trickle headers, or send headers and stall mid-body; reconnect when closed."""
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if index % 2:
                for byte in SLOW_HEADERS:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1)
            else:
                writer.write(SLOW_HEADERS + b"Content-Length: 100000\r\n\r\n" + b"\x0a")
                await writer.drain()
            while True:
                writer.write(b"\x00")
                await writer.drain()
                await asyncio.sleep(1)
        except OSError:
            await asyncio.sleep(0.5)


def _slow_clients(port: int, count: int) -> None:
    async def run():
        await asyncio.gather(*(_slow_connection(port, index) for index in range(count)))

    asyncio.run(run())


def start_slow_clients(port: int, count: int) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(
        target=_slow_clients, args=(port, count), daemon=True
    )
    process.start()
    # Until they are all connected: count this machine's sockets to the port.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _connections_to(port) < count * 0.9:
        time.sleep(0.2)
    return process


def _connections_to(port: int) -> int:
    return sum(
        1
        for conn in psutil.net_connections("tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == "ESTABLISHED"
    )


def client(args) -> tuple[int, int, list[float]]:
    """bench/ingest.py's client, counting a timed-out or dropped request as a failure."""
    import requests

    url, token, payloads, deadline = args
    session = requests.Session()
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    sent, failures, latencies = 0, 0, []
    for body in payloads:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        try:
            ok = session.post(url, data=body, headers=headers, timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(time.perf_counter() - started)
        sent, failures = sent + ok, failures + (not ok)
    return sent, failures, latencies


@dataclass
class Figures:
    """Acknowledged spans per second, and stored ones: until the spool was empty too."""

    spans_per_second: float
    stored_per_second: float
    p99_ms: float
    failures: int
    peak_rss_mib: float
    lost: int | None = None
    cpu_us_per_span: dict = field(default_factory=dict)

    def line(self) -> str:
        lost = "" if self.lost is None else f", {self.lost} acknowledged but not stored"
        return (
            f"{self.spans_per_second:9,.0f} spans/s answered, {self.stored_per_second:9,.0f} "
            f"stored, p99 {self.p99_ms:7,.0f} ms, {self.failures} failed, "
            f"peak RSS {self.peak_rss_mib:,.0f} MiB{lost}"
        )

    def cpu_line(self) -> str:
        parts = ", ".join(f"{name} {value:.1f}" for name, value in self.cpu_us_per_span.items())
        return f"CPU per span: {sum(self.cpu_us_per_span.values()):.1f} us ({parts})"


class CpuMeter:
    """CPU seconds of the load's clients, the server's processes and its PostgreSQL backends.

    The clients are this process's children (counted once reaped); backends
    are those connected to the server's database, which must be local.
    """

    def __init__(self, server: "Server"):
        self.server = server
        self.start = self._read()

    def _read(self) -> tuple[float, float, dict[int, float]]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (children.ru_utime + children.ru_stime, self.server.cpu_seconds(),
                self._backends())  # fmt: skip

    def _backends(self) -> dict[int, float]:
        query = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                 "AND pid <> pg_backend_pid()")  # fmt: skip
        try:
            with psycopg.connect(self.server.database_url) as conn:
                pids = [row[0] for row in conn.execute(query)]
        except psycopg.OperationalError:
            return {}  # Stopped for the outage phase: its backends are gone.
        return {pid: _process_cpu(pid) for pid in pids}

    def per_span(self, spans: int) -> dict[str, float]:
        clients, server, backends = self._read()
        database = sum(cpu - self.start[2].get(pid, 0.0) for pid, cpu in backends.items())
        spent = {"clients": clients - self.start[0], "server": server - self.start[1],
                 "PostgreSQL": database}  # fmt: skip
        return {name: seconds / max(spans, 1) * 1e6 for name, seconds in spent.items()}


def _process_cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def wait_for_empty_spool(spool: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while any(spool.glob("*.otlp")) and time.monotonic() < deadline:
        time.sleep(0.1)


def healthy_load(server: Server, token: str, *, clients: int, seconds: float, batch: int,
                 seed: int, drain: bool = True) -> Figures:  # fmt: skip
    per_client = int(seconds * 60 / clients) + 10
    payload_sets = [
        build_payloads(f"bench-servers-{seed}", per_client, batch, seed * 100 + n)
        for n in range(clients)
    ]
    deadline = time.monotonic() + seconds
    peak = server.rss_bytes()
    meter = CpuMeter(server)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        pending = pool.map_async(client, [(server.url, token, p, deadline) for p in payload_sets])
        while not pending.ready():
            peak = max(peak, server.rss_bytes())
            pending.wait(0.5)
        results = pending.get()
    elapsed = time.perf_counter() - started
    # Batches spooled when the ingest slots were busy are stored by the replayers.
    if drain:
        wait_for_empty_spool(server.spool)
    stored_after = time.perf_counter() - started
    latencies = sorted(lat for result in results for lat in result[2])
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)] if latencies else float("nan")
    spans = sum(result[0] for result in results) * batch
    failures = sum(result[1] for result in results)
    figures = Figures(spans / elapsed, spans / stored_after, p99 * 1000, failures, peak / 2**20,
                      cpu_us_per_span=meter.per_span(spans))  # fmt: skip
    if drain:
        # A failed request may still have been stored: more stored is not a loss.
        figures.lost = max(0, spans - _stored(server.database_url, f"bench-servers-{seed}"))
    return figures


def _stored(database_url: str, service: str) -> int:
    with psycopg.connect(database_url) as conn:
        query = "SELECT count(*) FROM telemetry_span WHERE service = %s"
        return conn.execute(query, [service]).fetchone()[0]


def compare_servers(args, database: Database, work: Path) -> dict[str, Figures]:
    idle_figures = {}
    for option in args.options:
        data = work / f"data-{option}"
        extra = args.server_env if option != "gthread" else {}
        env = server_env(database.fresh(), data, **extra)
        server = Server(option, env, work / f"{option}.log")
        try:
            server.warm_up(database.token, args.batch)
            idle = healthy_load(server, database.token, clients=args.clients,
                                seconds=args.seconds, batch=args.batch, seed=1)  # fmt: skip
            slow_process = start_slow_clients(server.port, args.slow)
            try:
                slow = healthy_load(server, database.token, clients=args.clients,
                                    seconds=args.seconds, batch=args.batch, seed=2)  # fmt: skip
            finally:
                slow_process.kill()
                slow_process.join()  # Reaped now, its CPU is not counted as a later client's.
        finally:
            server.stop()
        idle_figures[option] = idle
        for label, figures in (("idle", idle), (f"{args.slow} slow", slow)):
            print(f"server {option:14} {label:9}: {figures.line()}", flush=True)
    return idle_figures


def ceiling_processes(args) -> int:
    """As many concurrent stores as the server runs with this load: one per client at most."""
    default = os.environ.get("MONOENV_INGEST_CONCURRENCY", "2")
    concurrency = int(args.server_env.get("MONOENV_INGEST_CONCURRENCY", default))
    return min(args.clients, WORKERS * concurrency)


def ceiling(args, database_url: str):
    """bench/ingest.py's in-process ceiling: the same batches, decoded and COPYed, no HTTP."""
    from bench import ingest as ingest_bench

    os.environ["DATABASE_URL"] = database_url
    import dj_database_url
    import django
    from django.db import connections

    django.setup()
    # Settings were read once; each run has its own fresh database.
    connections.close_all()
    connections["default"].settings_dict.update(dj_database_url.parse(database_url))
    ceiling_args = argparse.Namespace(
        ceiling_processes=ceiling_processes(args), ceiling_batches=args.ceiling_batches,
        batch=args.batch,
    )  # fmt: skip
    return ingest_bench.measure_ceiling(ceiling_args, f"bench-servers-ceiling-{os.getpid()}")


def end_to_end(args, database: Database, work: Path, label: str, option: str, cwd: Path,
               seed: int) -> Figures:  # fmt: skip
    extra = args.server_env if label == "after" else {}  # The code before, as it ran.
    env = server_env(database.fresh(), work / f"data-{label}", **extra)
    server = Server(option, env, work / f"{label}.log", cwd=cwd)
    try:
        server.warm_up(database.token, args.batch)
        replayed_before = server.replayed_batches()
        figures = healthy_load(server, database.token, clients=args.clients,
                               seconds=args.seconds, batch=args.batch, seed=seed)  # fmt: skip
        replayed = server.replayed_batches() - replayed_before
    finally:
        server.stop()
    print(f"end to end, {label:6} ({args.before_rev if label == 'before' else 'this tree'}): "
          f"{figures.line()}", flush=True)  # fmt: skip
    print(f"end to end, {label:6}: {figures.cpu_line()}; {replayed} batches spooled as every "
          "ingest slot was busy, then replayed", flush=True)  # fmt: skip
    return figures


def before_and_after(args, database: Database, work: Path) -> None:
    """The ratio to the ceiling, stated directly: the same batches, the same concurrency.

    Both sides get args.clients concurrent streams of the same 512-span
    batches on fresh databases of one server; the ceiling runs before and
    after the end-to-end runs, so load that drifts meanwhile shows as a gap
    between the two, and their mean is the ceiling.
    """
    before_tree = work / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), args.before_rev],
                   cwd=REPO, check=True, capture_output=True)  # fmt: skip
    try:
        first = ceiling(args, database.fresh())
        runs = {
            "before": end_to_end(args, database, work, "before", "before", before_tree, 10),
            "after": end_to_end(args, database, work, "after", "uvicorn", REPO, 11),
        }
        last = ceiling(args, database.fresh())
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=REPO,
                       capture_output=True)  # fmt: skip
    top = (first.spans_per_second + last.spans_per_second) / 2
    print(f"ceiling, {ceiling_processes(args)} processes as the {args.clients} clients: "
          f"{first.spans_per_second:,.0f} spans/s before the end-to-end runs, "
          f"{last.spans_per_second:,.0f} after, mean {top:,.0f}")  # fmt: skip
    for label, figures in runs.items():
        rate = figures.stored_per_second
        print(f"ratio end to end / ceiling, {label:6}: {rate / top:.2f} "
              f"({rate:,.0f} / {top:,.0f} spans/s)")  # fmt: skip
    # Where CPU is the limit (a quiet machine's two cores), this is what the ratio tends to.
    ceiling_cpu = (first.cpu_us_per_span + last.cpu_us_per_span) / 2
    for label, figures in runs.items():
        used = sum(figures.cpu_us_per_span.values())
        print(f"CPU per span, ceiling / end to end, {label:6}: {ceiling_cpu / used:.2f} "
              f"({ceiling_cpu:.1f} / {used:.1f} us)")  # fmt: skip
    rates = {label: figures.stored_per_second for label, figures in runs.items()}
    print(f"after / before: {rates['after'] / rates['before']:.2f}", flush=True)


def spool_outage(args, postgres: Postgres, database: Database, work: Path) -> None:
    data = work / "data-outage"
    env = server_env(database.fresh(), data, **args.server_env)
    server = Server("uvicorn", env, work / "outage.log")
    spool = data / "spool"
    try:
        server.warm_up(database.token, args.batch)
        replayed_before = server.replayed_batches()
        steady = healthy_load(server, database.token, clients=args.clients,
                              seconds=args.seconds, batch=args.batch, seed=20)  # fmt: skip
        steady_replayed = server.replayed_batches() - replayed_before
        postgres.stop()
        try:
            down = healthy_load(server, database.token, clients=args.clients,
                                seconds=args.outage_seconds, batch=args.batch, seed=21,
                                drain=False)  # fmt: skip
            spooled = list(spool.glob("*.otlp"))
            spooled_bytes = sum(path.stat().st_size for path in spooled)
        finally:
            postgres.start()
        back = time.monotonic()
        while list(spool.glob("*.otlp")):
            time.sleep(0.2)
        replay = time.monotonic() - back
    finally:
        server.stop()
    print(f"database up:   {steady.line()}")
    print(f"database up:   {steady_replayed} batches went through the spool (every ingest slot "
          "busy, or a store past MONOENV_INGEST_DB_TIMEOUT_SECONDS)")  # fmt: skip
    print(f"database down: {down.spans_per_second:9,.0f} spans/s answered, p99 "
          f"{down.p99_ms:,.0f} ms, {down.failures} failed, for {args.outage_seconds:.0f} s: "
          f"{len(spooled)} batches ({spooled_bytes / 2**20:,.0f} MiB) spooled")  # fmt: skip
    print(f"replay after the outage: {replay:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an external PostgreSQL (its postgres database)")
    default_options = ["gthread", "uvicorn", "gunicorn-asgi"]
    if shutil.which("granian", path=str(Path(PYTHON).parent)):
        default_options.append("granian")
    parser.add_argument("--options", nargs="+", default=default_options)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--outage-seconds", type=float, default=60)
    parser.add_argument("--ceiling-batches", type=int, default=100, help="per process")
    parser.add_argument("--before-rev", default="main", help="the code to compare against")
    parser.add_argument("--skip", nargs="*", default=[], choices=["servers", "ratio", "outage"])
    parser.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="settings for this tree's servers (MONOENV_OTLP_HTTP_THREADS=8)")
    args = parser.parse_args()
    args.server_env = dict(item.split("=", 1) for item in args.server_env)

    work = Path(tempfile.mkdtemp(prefix="monoenv-bench-servers-"))
    work.chmod(0o755)
    postgres = None
    if args.database_url:
        base = args.database_url.rsplit("/", 1)[0]
        database = Database(args.database_url, lambda name: f"{base}/{name}")
    else:
        postgres = Postgres(work)
        postgres.start()
        database = Database(postgres.url("postgres"), postgres.url)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}; "
          f"PostgreSQL {'external' if args.database_url else 'embedded'}; "
          f"settings {args.server_env or 'default'}", flush=True)  # fmt: skip
    try:
        database.prepare(work / "data-template")
        if "servers" not in args.skip:
            compare_servers(args, database, work)
        if "ratio" not in args.skip:
            before_and_after(args, database, work)
        if postgres and "outage" not in args.skip:
            spool_outage(args, postgres, database, work)
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        if args.database_url:
            database.drop_all()
        if postgres and postgres.running():
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
