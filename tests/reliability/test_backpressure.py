"""More ingest than the database can absorb: prompt refusals, bounded memory.

A trigger makes every batch's transaction sleep, so one process absorbs about
one batch a second, and many more clients than ingest slots send batches as
fast as they are answered, without honouring Retry-After. Every answer must
be a 200, or a 503 (UNAVAILABLE over gRPC) that carries its retry delay, and
must come well inside an exporter's 10 s timeout; the servers' memory must not
grow with the flood. A table lock that never ends is cut short by the ingest
database timeout, also with 503. The spool is off here, which is how ingest
behaves once it is full (tests/reliability/test_postgres_restart.py has it on).
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench.ingest import build_payloads

SLOW_BATCHES = """
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
CREATE TRIGGER slow_batch BEFORE INSERT ON telemetry_pendingminute
FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
"""
CLIENTS = 24
FLOOD_SECONDS = 12
EXPORTER_TIMEOUT = 10
# No per-token rate limit here: this is about what the database can take.
SERVER_ENV = {"MONOENV_TOKEN_RATE_LIMIT": "0", "MONOENV_SPOOL_MAX_BYTES": "0"}


@dataclass
class Answers:
    """What a flood of clients got back: outcome and latency of every request."""

    outcomes: Counter = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, seconds: float) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.latencies.setdefault(outcome, []).append(seconds)

    def slowest(self, outcome: str) -> float:
        return max(self.latencies.get(outcome, [0.0]))


def _flood(send, payloads: list[bytes], seconds: float, rss) -> tuple[Answers, list[int]]:
    answers, samples = Answers(), []
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        sender = send()
        for index in range(number, 10**6, CLIENTS):
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            outcome = sender(payloads[index % len(payloads)])
            answers.add(outcome, time.perf_counter() - started)
            if outcome != "ok":
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        samples.append(rss())
        time.sleep(0.5)
    return answers, samples


def _http_sender(url: str, token: str):
    def make():
        session = requests.Session()
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}

        def send(body: bytes) -> str:
            try:
                response = session.post(url, data=body, headers=headers, timeout=EXPORTER_TIMEOUT)
            except requests.RequestException as error:
                return type(error).__name__
            if response.status_code in (429, 503):
                return f"{response.status_code} Retry-After {response.headers.get('Retry-After')}"
            return "ok" if response.status_code == 200 else str(response.status_code)

        return send

    return make


def _grpc_sender(address: str, token: str):
    def make():
        stub = trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(address))
        metadata = (("authorization", f"Bearer {token}"),)

        def send(body: bytes) -> str:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            try:
                stub.Export(request, metadata=metadata, timeout=EXPORTER_TIMEOUT)
            except grpc.RpcError as error:
                retry_info = "google.rpc.retryinfo-bin" in dict(error.trailing_metadata() or ())
                return f"{error.code().name}{' RetryInfo' if retry_info else ''}"
            return "ok"

        return send

    return make


def _growth(samples: list[int]) -> float:
    """Peak RSS of the flood's last half over its first half's."""
    half = len(samples) // 2
    return max(samples[half:]) / max(samples[:half]) - 1


@pytest.fixture
def slow_stack(postgres, database, stack):
    with postgres.connect(database) as conn:
        conn.execute(SLOW_BATCHES)
    stack.start_web(workers=1, **SERVER_ENV)
    stack.start_grpc(threads=8, **SERVER_ENV)
    return stack


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return build_payloads("backpressure", 200, 512, seed=1)


def test_http_clients_get_prompt_503s_and_memory_stays_flat(slow_stack, postgres, payloads):
    url = f"http://127.0.0.1:{slow_stack.http_port}/v1/traces"
    answers, samples = _flood(
        _http_sender(url, postgres.token), payloads, FLOOD_SECONDS, slow_stack.rss_bytes
    )

    print(f"HTTP flood: {dict(answers.outcomes)}; rss {[s >> 20 for s in samples]} MiB")
    assert set(answers.outcomes) == {"ok", "503 Retry-After 2"}, answers.outcomes
    assert answers.outcomes["503 Retry-After 2"] > 5 * answers.outcomes["ok"] > 0
    # Refused within the queue wait of 1 s; stored within the database's time.
    assert answers.slowest("503 Retry-After 2") < 3
    assert answers.slowest("ok") < EXPORTER_TIMEOUT / 2
    assert _growth(samples) < 0.10


def test_grpc_clients_get_prompt_unavailable_with_retry_info(slow_stack, postgres, payloads):
    address = f"127.0.0.1:{slow_stack.grpc_port}"
    answers, samples = _flood(
        _grpc_sender(address, postgres.token), payloads, FLOOD_SECONDS, slow_stack.rss_bytes
    )

    print(f"gRPC flood: {dict(answers.outcomes)}; rss {[s >> 20 for s in samples]} MiB")
    assert set(answers.outcomes) == {"ok", "UNAVAILABLE RetryInfo"}, answers.outcomes
    assert answers.outcomes["UNAVAILABLE RetryInfo"] > 5 * answers.outcomes["ok"] > 0
    assert answers.slowest("UNAVAILABLE RetryInfo") < 3
    assert answers.slowest("ok") < EXPORTER_TIMEOUT / 2
    assert _growth(samples) < 0.10


def test_a_lock_that_never_ends_gets_503_within_the_database_timeout(
    slow_stack, postgres, database, payloads
):
    url = f"http://127.0.0.1:{slow_stack.http_port}/v1/traces"
    send = _http_sender(url, postgres.token)()
    with postgres.connect(database) as conn, conn.transaction():
        conn.execute("LOCK TABLE telemetry_pendingminute IN EXCLUSIVE MODE")
        started = time.perf_counter()
        outcome = send(payloads[0])
        waited = time.perf_counter() - started

    assert outcome == "503 Retry-After 2"
    # MONOENV_INGEST_DB_TIMEOUT_SECONDS is 5.
    assert 5 <= waited < 7
    assert send(payloads[1]) == "ok"
