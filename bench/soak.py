"""Soak: ingest for --minutes at 80% of the measured maximum, with the real SDKs.

By default it boots its own stack with the launcher (`make run`'s) on free
ports, in a fresh data directory, with the embedded PostgreSQL and Redis:

    .venv/bin/python bench/soak.py                  # 30 s probe, then 10 minutes
    .venv/bin/python bench/soak.py --minutes 2 --max-rate 4000

or runs against a running deployment:

    .venv/bin/python bench/soak.py --http-url http://host:4318/v1/traces \\
        --grpc-url host:4317 --token TOKEN --database-url postgres://... --no-rss

Load: --http-procs + --grpc-procs processes (bench/sdk_load.py), each a
TracerProvider with a BatchSpanProcessor (SDK defaults: queue 2048, batches of
512, 5 s delay) feeding OTLPSpanExporter, under its own service name. First
they create spans as fast as they can for --probe-seconds; the spans exported
per second are the maximum. Then each paces span creation at its share of 80%
of that for --minutes. Afterwards, per service: the spans exported (export()
returned SUCCESS) must equal the rows stored and the distinct
(trace_id, span_id) stored. The p99 is of one export() call, retries included.
The resident memory of every process of the stack is sampled every 10 s; the
growth is the median of the last minute's samples over the median of the
first minute after --warmup-minutes.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.sdk_load import Load, stored_counts  # noqa: E402

SAMPLE_SECONDS = 10
SERVER_VARIABLES = ("DATABASE_URL", "DATABASE_URL_FILE", "CELERY_BROKER_URL",
                    "CELERY_BROKER_URL_FILE")  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LauncherStack:
    """`python -m monoenv_site.launcher` on free ports with its own data directory."""

    def __init__(self, data_dir: Path):
        self.data = data_dir
        self.http_port, self.otlp_port, self.grpc_port = free_port(), free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
        self.env.update(
            MONOENV_DATA_DIR=str(self.data),
            MONOENV_HTTP_PORT=str(self.http_port),
            MONOENV_OTLP_HTTP_PORT=str(self.otlp_port),
            MONOENV_OTLP_GRPC_PORT=str(self.grpc_port),
            MONOENV_DEMO="0",
            PYTHONUNBUFFERED="1",
        )
        self.log = (self.data / "launcher.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monoenv_site.launcher"], cwd=REPO, env=self.env,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_until_up(self, timeout: float = 180) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the launcher exited; see {self.data / 'launcher.log'}")
            try:
                requests.get(f"http://127.0.0.1:{self.otlp_port}/v1/traces", timeout=5)
                if (self.data / "ingest-token.txt").exists() and self._grpc_listens():
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise SystemExit(f"the stack did not come up; see {self.data / 'launcher.log'}")

    def _grpc_listens(self) -> bool:
        import socket

        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.grpc_port)) == 0

    @property
    def token(self) -> str:
        return (self.data / "ingest-token.txt").read_text().strip()

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.data / 'pg'}"

    def processes(self) -> list[psutil.Process]:
        """Every process the launcher runs, and the embedded PostgreSQL's."""
        found = psutil.Process(self.proc.pid).children(recursive=True)
        pid_file = self.data / "pg" / "postmaster.pid"
        if pid_file.exists():
            postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
            found += [postmaster, *postmaster.children()]
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def role(proc: psutil.Process) -> str:
    if proc.name() == "postgres":
        return "postgres"
    cmdline = " ".join(proc.cmdline())
    for needles, name in (
        (("gunicorn",), "web"),
        (("otlp_grpc",), "grpc"),
        (("celery", " worker"), "celery-worker"),
        (("celery", " beat"), "celery-beat"),
        (("redis-server",), "redis"),
        # The launcher, and honcho's per-process output forwarders it forks.
        (("monoenv_site.launcher",), "launcher"),
    ):
        if all(needle in cmdline for needle in needles):
            return name
    return proc.name()


class RssSampler(threading.Thread):
    """RSS of every stack process every SAMPLE_SECONDS, keyed by (role, pid)."""

    def __init__(self, list_processes):
        super().__init__(daemon=True)
        self.list_processes = list_processes
        self.samples: dict[tuple[str, int], list[tuple[float, int]]] = {}
        self.started = time.monotonic()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic() - self.started
            for proc in self.list_processes():
                try:
                    key = (role(proc), proc.pid)
                    self.samples.setdefault(key, []).append((now, proc.memory_info().rss))
                except psutil.Error:
                    pass
            self.stopping.wait(SAMPLE_SECONDS)

    def growth(self, warmup: float, end: float) -> list[tuple[str, int, float, float, float]]:
        """(role, pid, MiB after warm-up, MiB at the end, growth) per process."""
        rows = []
        for (name, pid), samples in sorted(self.samples.items()):
            first = [rss for at, rss in samples if warmup <= at < warmup + 60]
            last = [rss for at, rss in samples if end - 60 <= at]
            if not first or not last:
                continue  # Came or went during the run (PostgreSQL backends do).
            before, after = statistics.median(first), statistics.median(last)
            rows.append((name, pid, before / 2**20, after / 2**20, after / before - 1))
        return rows


def run_load(args, *, token: str, label: str, rate: float, seconds: float) -> list[dict]:
    load = Load()
    try:
        for protocol, count, endpoint in (("http", args.http_procs, args.http_url),
                                          ("grpc", args.grpc_procs, args.grpc_url)):  # fmt: skip
            for number in range(count):
                load.start(protocol=protocol, endpoint=endpoint, token=token,
                           service=f"{label}-{protocol}-{number}", rate=rate,
                           seconds=seconds)  # fmt: skip
        return load.wait(timeout=seconds + 300)
    finally:
        load.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * q + 0.5) - 1, 0)]


def find_max_rate(args, token: str, run_id: str) -> float:
    results = run_load(args, token=token, label=f"probe-{run_id}", rate=0,
                       seconds=args.probe_seconds)  # fmt: skip
    exported = sum(result["exported"] for result in results)
    seconds = max(result["created_for"] for result in results)
    rate = exported / seconds
    print(f"probe: {exported:,} spans exported in {seconds:.0f} s by {len(results)} processes "
          f"creating spans unpaced = max {rate:,.0f} spans/s", flush=True)  # fmt: skip
    return rate


def check_stored(args, results: list[dict]) -> bool:
    services = [result["service"] for result in results]
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        counts = stored_counts(conn, services)
    ok = True
    for result in results:
        rows, distinct = counts[result["service"]]
        same = rows == distinct == result["exported"]
        ok &= same
        print(f"  {result['service']}: created {result['created']:,}, exported "
              f"{result['exported']:,}, failed {result['failed']:,}, dropped by the SDK "
              f"{result['dropped']:,}; stored rows {rows:,}, distinct (trace_id, span_id) "
              f"{distinct:,} {'OK' if same else 'MISMATCH'}")  # fmt: skip
    return ok


def report_latency(results: list[dict]) -> None:
    for protocol in ("http", "grpc"):
        latencies = [lat for r in results if r["protocol"] == protocol for lat in r["latencies"]]
        if latencies:
            print(f"export() over {protocol}: {len(latencies):,} calls, p50 "
                  f"{percentile(latencies, 0.5) * 1000:.0f} ms, p99 "
                  f"{percentile(latencies, 0.99) * 1000:.0f} ms, max "
                  f"{max(latencies) * 1000:.0f} ms")  # fmt: skip
    every = [lat for result in results for lat in result["latencies"]]
    print(f"p99 ingest request latency (export() call, all protocols): "
          f"{percentile(every, 0.99) * 1000:.0f} ms")  # fmt: skip


def report_rss(sampler: RssSampler, args, seconds: float) -> bool:
    warmup = sampler_offset(sampler, args) + args.warmup_minutes * 60
    end = sampler_offset(sampler, args) + seconds
    rows = sampler.growth(warmup, end)
    worst = 0.0
    print(f"RSS after {args.warmup_minutes:g} min of warm-up -> last minute (target < 10%):")
    for name, pid, before, after, growth in rows:
        print(f"  {name:<14} pid {pid:<8} {before:7.1f} MiB -> {after:7.1f} MiB  {growth:+.1%}")
        if name != "postgres":
            worst = max(worst, growth)
    print(f"largest growth of a Monoenv process: {worst:+.1%}")
    return worst < 0.10


def sampler_offset(sampler: RssSampler, args) -> float:
    return args.soak_started - sampler.started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--max-rate", type=float, help="spans/s; skips the probe")
    parser.add_argument("--probe-seconds", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=2)
    parser.add_argument("--http-procs", type=int, default=2)
    parser.add_argument("--grpc-procs", type=int, default=2)
    parser.add_argument("--http-url", help="OTLP/HTTP endpoint of a running stack")
    parser.add_argument("--grpc-url", help="host:port of its OTLP/gRPC endpoint")
    parser.add_argument("--token", default=os.environ.get("MONOENV_TOKEN"))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--data-dir", help="for the stack it boots (default: a new temp dir)")
    args = parser.parse_args()

    stack = None
    if not args.http_url:
        data = Path(args.data_dir or tempfile.mkdtemp(prefix="monoenv-soak-"))
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o755)  # PostgreSQL runs as another user when started by root.
        stack = LauncherStack(data)
        print(f"booting the stack in {data} ...", flush=True)
        stack.wait_until_up()
        args.http_url = f"http://127.0.0.1:{stack.otlp_port}/v1/traces"
        args.grpc_url = f"127.0.0.1:{stack.grpc_port}"
        args.token, args.database_url = stack.token, stack.database_url
    try:
        return soak(args, stack)
    finally:
        if stack:
            stack.stop()


def soak(args, stack: LauncherStack | None) -> int:
    run_id = str(int(time.time()))
    procs = args.http_procs + args.grpc_procs
    memory = psutil.virtual_memory().total / 2**30
    print(f"machine: {os.cpu_count()} cores, {memory:.0f} GiB; {args.http_procs} HTTP + "
          f"{args.grpc_procs} gRPC exporter processes", flush=True)  # fmt: skip
    max_rate = args.max_rate or find_max_rate(args, args.token, run_id)
    target = 0.8 * max_rate
    seconds = args.minutes * 60
    print(f"soak: {target:,.0f} spans/s (80% of {max_rate:,.0f}) for {args.minutes:g} min, "
          f"{target / procs:,.0f} spans/s per process", flush=True)  # fmt: skip
    sampler = RssSampler(stack.processes) if stack else None
    if sampler:
        sampler.start()
    args.soak_started = time.monotonic()
    results = run_load(args, token=args.token, label=f"soak-{run_id}", rate=target / procs,
                       seconds=seconds)  # fmt: skip
    if sampler:
        sampler.stopping.set()
    exported = sum(result["exported"] for result in results)
    created_for = max(result["created_for"] for result in results)
    print(f"sent: {exported:,} spans exported in {created_for:.0f} s "
          f"= {exported / created_for:,.0f} spans/s")  # fmt: skip
    stored_ok = check_stored(args, results)
    print(f"every exported span stored exactly once: {'yes' if stored_ok else 'NO'}")
    report_latency(results)
    rss_ok = report_rss(sampler, args, seconds) if sampler else True
    report_partition_size(args)
    return 0 if stored_ok and rss_ok else 1


def report_partition_size(args) -> None:
    """Bytes per stored span, indexes and TOAST included, from the span partitions."""
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        for (name,) in conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits "
            "WHERE inhparent = 'telemetry_span'::regclass ORDER BY 1"
        ).fetchall():
            size = conn.execute("SELECT pg_total_relation_size(%s)", [name]).fetchone()[0]
            rows = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            if rows:
                print(f"partition {name}: {rows:,} rows, {size / 2**20:,.1f} MiB "
                      f"(pg_total_relation_size) = {size / rows:,.0f} bytes/span")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
