"""`make run` end to end, on the embedded default.

Boots the launcher with no DATABASE_URL or CELERY_BROKER_URL, so it starts its
own PostgreSQL and Redis; sends a span over OTLP/HTTP and one over gRPC with
the real OpenTelemetry SDK, reads both back through the API, then stops it
with SIGTERM and checks that nothing it started is left, and that it stopped
in order (no Celery tracebacks about a Redis that went first).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.telemetry.otlp_payloads import make_request, make_span

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv/bin/python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
BOOT_TIMEOUT = 120
STOP_TIMEOUT = 30
# What makes the launcher use real servers instead of the embedded ones.
SERVER_VARIABLES = (
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_URL_FILE",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    # An orphan nobody reaps stays a zombie: it has exited all the same.
    def running(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [proc for proc in procs if running(proc)]


class Stack:
    def __init__(self, tmp_path: Path, **env: str):
        self.data = tmp_path / "data"
        self.log_path = tmp_path / "launcher.log"
        self.http_port, self.otlp_http_port, self.grpc_port = (free_port() for _ in range(3))
        self.env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
        self.env.update(
            MONOENV_DATA_DIR=str(self.data),
            MONOENV_HTTP_PORT=str(self.http_port),
            MONOENV_OTLP_HTTP_PORT=str(self.otlp_http_port),
            MONOENV_OTLP_GRPC_PORT=str(self.grpc_port),
            PYTHONUNBUFFERED="1",
            # The read-back below must find exactly the spans this test sent.
            MONOENV_DEMO="0",
        )
        self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.descendants: list[psutil.Process] = []

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "monoenv_site.launcher"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_for_log(self, text: str, timeout: float = BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"launcher exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.5)
        pytest.fail(f"no {text!r} in the log within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C or a service manager would; check it all went."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher did not stop within {STOP_TIMEOUT} s:\n{self.log()}")
        _, left = psutil.wait_procs(alive(self.descendants), timeout=5)
        assert not alive(left), f"still running: {left}\n{self.log()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"launcher exited with {self.proc.returncode}:\n{self.log()}")
            if self._http_answers() and listening(self.grpc_port):
                # Everything is started by now: remember it all, to check it all stops.
                self.descendants = psutil.Process(self.proc.pid).children(recursive=True)
                return
            time.sleep(0.5)
        pytest.fail(f"the stack did not come up within {BOOT_TIMEOUT} s:\n{self.log()}")

    def _http_answers(self) -> bool:
        try:
            requests.get(f"http://127.0.0.1:{self.http_port}/", timeout=5)
        except (requests.ConnectionError, requests.Timeout):
            # Gunicorn listens before its workers have loaded the app.
            return False
        return True

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def postgres_running(self) -> bool:
        return (self.data / "pg" / "postmaster.pid").exists()

    def force_stop(self) -> None:
        """Leave nothing behind when the test failed half-way."""
        procs = self.descendants
        if self.proc.poll() is None:
            procs = procs + psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.kill()
            self.proc.wait()
        for proc in alive(procs):
            proc.kill()
        if self.postgres_running():
            code = "import sys; from pathlib import Path; from monoenv_site import embedded; "
            code += "embedded.stop_postgres(Path(sys.argv[1]))"
            subprocess.run([PYTHON, "-c", code, str(self.data)], cwd=ROOT, timeout=60)


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path)
    stack.start()
    try:
        yield stack
    finally:
        stack.force_stop()


@pytest.fixture
def demo_stack(tmp_path):
    # MONOENV_DEMO unset: the embedded default decides, as on a fresh clone.
    stack = Stack(tmp_path, MONOENV_DEMO="")
    stack.start()
    try:
        yield stack
    finally:
        stack.force_stop()


def export_one_span(exporter: SpanExporter, name: str) -> str:
    """Export one finished span with the real SDK; return its trace id in hex."""
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "make-run-test"}))
    provider.add_span_processor(SimpleSpanProcessor(finished))
    with provider.get_tracer(__name__).start_as_current_span(name) as span:
        trace_id = span.get_span_context().trace_id
    assert exporter.export(finished.get_finished_spans()) is SpanExportResult.SUCCESS
    exporter.shutdown()
    provider.shutdown()
    return f"{trace_id:032x}"


def read_trace(stack: Stack, trace_id: str, token: str) -> requests.Response:
    # No waiting: a receiver answers only once the spans are committed.
    url = f"http://127.0.0.1:{stack.http_port}/api/v1/traces/{trace_id}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def post_chunked(stack: Stack, token: str, name: str) -> str:
    """Post one span with no Content-Length, chunked, as streaming clients do."""
    span = make_span(name=name)
    body = make_request([span], resource={"service.name": "make-run-test"}).SerializeToString()
    response = requests.post(
        f"http://127.0.0.1:{stack.otlp_http_port}/v1/traces",
        data=iter([body[:10], body[10:]]),  # a generator body makes requests chunk it
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    return span.trace_id.hex()


@pytest.mark.slow(1)
def test_make_run_boots_ingests_and_stops(stack):
    stack.wait_until_up()
    ingest_token = (stack.data / "ingest-token.txt").read_text().strip()
    ci_token = (stack.data / "ci-token.txt").read_text().strip()
    assert ingest_token and ci_token and ingest_token != ci_token
    # The block to copy works for every SDK: Python's would otherwise speak gRPC to :4318.
    assert (
        f"OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{stack.otlp_http_port}\n"
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf\n"
        f"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20{ingest_token}\n"
    ) in stack.log_path.read_text()
    assert f"MONOENV_TOKEN={ci_token}" in stack.log_path.read_text()

    # Another shell, same data dir, no DATABASE_URL: finds the running PostgreSQL.
    created = stack.manage("create_token", "--name", "x", "--scopes", "read")
    assert created.returncode == 0, created.stdout + created.stderr
    read_token = created.stdout.strip().splitlines()[-1]

    http_exporter = HttpSpanExporter(
        endpoint=f"http://127.0.0.1:{stack.otlp_http_port}/v1/traces",
        headers={"Authorization": f"Bearer {ingest_token}"},
    )
    trace_id = export_one_span(http_exporter, "make-run-over-http")
    response = read_trace(stack, trace_id, read_token)
    assert response.status_code == 200, response.text
    assert "make-run-over-http" in response.text

    grpc_exporter = GrpcSpanExporter(
        endpoint=f"http://127.0.0.1:{stack.grpc_port}",
        insecure=True,
        headers=(("authorization", f"Bearer {ingest_token}"),),
    )
    trace_id = export_one_span(grpc_exporter, "make-run-over-grpc")
    response = read_trace(stack, trace_id, read_token)
    assert response.status_code == 200, response.text
    assert "make-run-over-grpc" in response.text

    trace_id = post_chunked(stack, ingest_token, "make-run-chunked")
    response = read_trace(stack, trace_id, ci_token)
    assert response.status_code == 200, response.text
    assert "make-run-chunked" in response.text
    # The token pasted into services sends telemetry and nothing else.
    assert read_trace(stack, trace_id, ingest_token).status_code == 403

    assert stack.descendants, "the launcher should supervise child processes"
    stack.stop()
    ports = (stack.http_port, stack.otlp_http_port, stack.grpc_port)
    assert not [port for port in ports if listening(port)], stack.log()
    assert not stack.postgres_running(), "the launcher should stop the PostgreSQL it started"
    # Redis went only after the worker and beat, so they lost no connection.
    log = stack.log_path.read_text(errors="replace")
    assert "Error 2 connecting" not in log and "Traceback" not in log, stack.log()


@pytest.mark.slow(3)
def test_make_run_streams_the_demo_on_the_embedded_default_and_stops_in_order(demo_stack):
    demo_stack.wait_until_up()
    # The demo defines its SLOs and posts deploys with the CI token, then the
    # worker judges them: Redis and PostgreSQL are busy when the stop comes.
    demo_stack.wait_for_log("simulate: defined SLO demo-frontend-latency")
    demo_stack.wait_for_log("simulate: backfilled")
    demo_stack.wait_for_log("deployments.tasks.evaluate_checkpoint[")

    demo_stack.stop()

    assert demo_stack.proc.returncode == 0, demo_stack.log()
    assert not demo_stack.postgres_running()
    log = demo_stack.log_path.read_text(errors="replace")
    assert log.index("redis stopped") > log.index("worker stopped"), demo_stack.log()
    for trouble in ("Error 2 connecting", "Traceback", "WorkerLostError"):
        assert trouble not in log, demo_stack.log()
