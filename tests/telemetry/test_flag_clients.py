"""Real OpenFeature clients round-trip their flag evaluations to the right request and variant.

- Python: openfeature-sdk with openfeature-hooks-opentelemetry's TracingHook,
  which adds a `feature_flag.evaluation` event to the current span, sent by
  the stock OTLP span exporters (HTTP/protobuf to the launcher's OTLP server,
  and gRPC).
- JavaScript: @openfeature/server-sdk with @openfeature/open-telemetry-hooks'
  EventHook, which emits the evaluation through the OTel JS logs SDK, and the
  JS trace SDK for the request spans, over OTLP/HTTP in JSON and protobuf
  (tests/js/flag_client.mjs). Skipped when node or npm is missing.

Expectations by hand: a user whose name ends in "-on" gets the variant `on`,
any other `off`; "-missing" users evaluate a flag the provider does not have,
which the hooks report with error.type flag_not_found.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from telemetry import flag_store
from telemetry.models import Attribution
from tests.reliability.harness import wait_for

openfeature_api = pytest.importorskip("openfeature.api")
pytest.importorskip("openfeature.contrib.hook.opentelemetry")

from openfeature.contrib.hook.opentelemetry import TracingHook  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.flag_evaluation import FlagResolutionDetails, Reason  # noqa: E402
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

JS_PROJECT = Path(__file__).resolve().parents[1] / "js"
USERS = ("ana-on", "bo-off", "cy-on", "di-missing")
EXPECTED_COHORTS = {"ana-on": "on", "bo-off": "off", "cy-on": "on",
                    "di-missing": "error:flag_not_found"}  # fmt: skip


def stored() -> list[flag_store.StoredEvaluation]:
    now = timezone.now()
    return flag_store.evaluations_in(now - timedelta(hours=1), now + timedelta(hours=1))


def wait_for_evaluations(count: int) -> list[flag_store.StoredEvaluation]:
    return wait_for(lambda: len(rows := stored()) >= count and rows, timeout=30,
                    what=f"{count} flag evaluations")  # fmt: skip


def attribute_until_settled() -> None:
    """What the periodic job does, without waiting for its 30 s retry."""
    wait_for(
        lambda: (
            flag_store.attribute_pending(now=timezone.now() + flag_store.RETRY_AFTER) is not None
            and all(row.attribution != Attribution.PENDING for row in stored())
        ),
        timeout=30,
        what="every evaluation attributed",
    )


def assert_each_request_got_its_variant(requests: dict[str, tuple[bytes, bytes]]) -> None:
    """requests: user -> (trace id, server span id), as the client recorded them."""
    rows = {row.context_id: row for row in stored()}
    assert set(rows) == set(requests)
    for user, (trace_id, server_span_id) in requests.items():
        row = rows[user]
        assert row.attribution == Attribution.REQUEST, user
        assert bytes(row.trace_id) == trace_id
        assert bytes(row.request_span_id) == server_span_id
        assert row.route == "/checkout"
        assert row.cohort == EXPECTED_COHORTS[user], user


# Python: span events through the OTLP span exporters.


def by_targeting_key(flag, context: EvaluationContext) -> FlagResolutionDetails:
    variant = "on" if context.targeting_key.endswith("-on") else "off"
    return FlagResolutionDetails(value=flag.variants[variant], variant=variant,
                                 reason=Reason.TARGETING_MATCH)  # fmt: skip


@pytest.fixture
def python_client():
    """An OpenFeature client in its own domain, with the OTel TracingHook."""
    domain = "monoenv-flag-test"
    flag = InMemoryFlag(default_variant="off", variants={"on": True, "off": False},
                        context_evaluator=by_targeting_key)  # fmt: skip
    openfeature_api.set_provider(InMemoryProvider({"new-checkout": flag}), domain=domain)
    client = openfeature_api.get_client(domain=domain)
    client.add_hooks([TracingHook()])
    return client


def serve_requests(client, tracer_provider: TracerProvider) -> dict[str, tuple[bytes, bytes]]:
    """One SERVER span per user; the first two evaluate on it, the others in a child span."""
    tracer = tracer_provider.get_tracer("py-checkout")
    requests = {}
    for index, user in enumerate(USERS):
        flag = "no-such-flag" if user.endswith("-missing") else "new-checkout"
        context = EvaluationContext(targeting_key=user)
        with tracer.start_as_current_span(
            "GET /checkout", kind=SpanKind.SERVER, attributes={"http.route": "/checkout"}
        ) as server:
            if index < 2:
                client.get_boolean_value(flag, False, context)
            else:
                with tracer.start_as_current_span("pricing"):
                    client.get_boolean_value(flag, False, context)
        ids = server.get_span_context()
        requests[user] = (ids.trace_id.to_bytes(16, "big"), ids.span_id.to_bytes(8, "big"))
    return requests


def test_python_openfeature_over_otlp_http_is_attributed_in_the_batch(
    start_server, ingest_token, python_client
):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    server = start_server()
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces",
                                headers={"Authorization": f"Bearer {ingest_token}"})  # fmt: skip
    provider = TracerProvider(resource=Resource.create({"service.name": "py-checkout"}))
    # One batch: each request span comes with its evaluations.
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    requests = serve_requests(python_client, provider)
    assert provider.force_flush(30_000)
    provider.shutdown()

    rows = wait_for_evaluations(len(USERS))
    assert {row.attribution for row in rows} == {Attribution.REQUEST}
    assert_each_request_got_its_variant(requests)


def test_python_openfeature_over_otlp_grpc_span_by_span(grpc_address, ingest_token, python_client):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=grpc_address, insecure=True,
                                headers=(("authorization", f"Bearer {ingest_token}"),))  # fmt: skip
    provider = TracerProvider(resource=Resource.create({"service.name": "py-checkout"}))
    # Span by span: a child's evaluation comes before its request span.
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    requests = serve_requests(python_client, provider)
    provider.shutdown()

    wait_for_evaluations(len(USERS))
    attribute_until_settled()
    assert_each_request_got_its_variant(requests)


# JavaScript: log records through the OTel JS logs SDK.


def _npm_ci() -> None:
    """npm ci once per lock file: node_modules carries the hash of the lock it came from.

    Holding a lock on the lock file: `make test`'s parallel workers share node_modules.
    """
    lock = JS_PROJECT / "package-lock.json"
    stamp = JS_PROJECT / "node_modules" / ".monoenv-lock-sha256"
    with lock.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        digest = hashlib.sha256(held.read()).hexdigest()
        if stamp.exists() and stamp.read_text() == digest:
            return
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_PROJECT, check=True,
                       capture_output=True, timeout=600)  # fmt: skip
        stamp.write_text(digest)


@pytest.fixture(scope="session")
def js_project():
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are not installed: the JavaScript client tests need them")
    _npm_ci()
    return JS_PROJECT


@pytest.mark.parametrize(
    ("encoding", "order", "compression"),
    [("json", "traces-first", "none"), ("proto", "logs-first", "none"),
     ("json", "logs-first", "gzip")],
)  # fmt: skip
def test_javascript_event_hook_over_otlp_logs_round_trips(
    js_project, start_server, ingest_token, encoding, order, compression
):
    server = start_server()
    completed = subprocess.run(
        ["node", "flag_client.mjs", server.url, ingest_token, encoding, order, *USERS],
        cwd=js_project, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "OTEL_EXPORTER_OTLP_COMPRESSION": compression},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr + server.log()
    requests = {}
    for line in completed.stdout.splitlines():
        request = json.loads(line)
        requests[request["user"]] = (bytes.fromhex(request["trace_id"]),
                                     bytes.fromhex(request["span_id"]))  # fmt: skip

    rows = wait_for_evaluations(len(USERS))
    assert {row.carrier for row in rows} == {"log"}
    if order == "traces-first":
        # The spans were in: attributed as the logs were stored.
        assert {row.attribution for row in rows} == {Attribution.REQUEST}
    attribute_until_settled()
    assert_each_request_got_its_variant(requests)
    by_user = {row.context_id: row for row in stored()}
    assert (by_user["ana-on"].provider, by_user["ana-on"].reason) == (
        "in-memory",
        "targeting_match",
    )
    # The JS hook sends typed values: true, not the string "true".
    assert (by_user["bo-off"].value, by_user["bo-off"].variant) == ("false", "off")
    assert by_user["di-missing"].error_type == "flag_not_found"
