"""OTLP/gRPC TraceService/Export: the real SDK exporter and a raw stub."""

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace.export import SpanExportResult

from telemetry.models import Span
from tests.telemetry.otlp_payloads import make_request, make_span
from tests.telemetry.sdk_traces import expected_rows, record_checkout_trace, stored_rows


def authorization(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def export_over_grpc(address, token, spans, compression=None) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=address,
        insecure=True,
        headers=authorization(token),
        timeout=10,
        compression=compression,
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_it_stores_spans_the_sdk_exports(grpc_address, ingest_token, compression):
    recorded = record_checkout_trace(
        {"service.name": "inventory", "service.version": "7", "deployment.environment": "prod"}
    )

    result = export_over_grpc(grpc_address, ingest_token, recorded.spans, compression)

    assert result == SpanExportResult.SUCCESS
    expected = expected_rows(recorded, service="inventory", version="7", environment="prod")
    assert stored_rows(recorded.trace_id) == expected


def test_the_sdk_exporter_gives_up_on_a_bad_token(grpc_address):
    recorded = record_checkout_trace({"service.name": "inventory"})

    result = export_over_grpc(grpc_address, "me_not-a-token", recorded.spans)

    assert result == SpanExportResult.FAILURE
    assert not Span.objects.filter(trace_id=recorded.trace_id).exists()


@pytest.mark.parametrize(
    "metadata",
    [(), authorization("me_unknown"), (("authorization", "Basic dXNlcjpwYXNz"),)],
    ids=["missing", "unknown", "not-bearer"],
)
def test_it_refuses_missing_and_unknown_tokens(trace_stub, metadata):
    with pytest.raises(grpc.RpcError) as failure:
        trace_stub.Export(make_request(), metadata=metadata, timeout=10)

    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not Span.objects.exists()


def test_it_refuses_tokens_without_the_ingest_scope(trace_stub, make_token):
    metadata = authorization(make_token("read", "deploy"))

    with pytest.raises(grpc.RpcError) as failure:
        trace_stub.Export(make_request(), metadata=metadata, timeout=10)

    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'ingest'" in failure.value.details()
    assert not Span.objects.exists()


def test_it_rejects_bad_ids_with_partial_success(trace_stub, ingest_token):
    good = make_span(name="good")
    request = make_request([good, make_span(trace_id=b"\x01" * 8), make_span(span_id=bytes(8))])

    response = trace_stub.Export(request, metadata=authorization(ingest_token), timeout=10)

    assert response.partial_success.rejected_spans == 2
    assert "invalid trace_id" in response.partial_success.error_message
    assert "invalid span_id" in response.partial_success.error_message
    assert list(Span.objects.values_list("name", flat=True)) == ["good"]


def test_it_answers_success_without_partial_success(trace_stub, ingest_token):
    response = trace_stub.Export(make_request(), metadata=authorization(ingest_token), timeout=10)

    assert not response.HasField("partial_success")
    assert Span.objects.count() == 1


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_it_refuses_messages_over_the_size_cap(
    start_grpc_server, ingest_token, settings, compression
):
    settings.MONOENV_MAX_REQUEST_BYTES = 10_000
    address = start_grpc_server()
    # Gzipped, this is a few hundred bytes: the cap must apply to the inflated size.
    request = make_request([make_span(attributes={"blob": "x" * 20_000})])

    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as failure:
        TraceServiceStub(channel).Export(
            request, metadata=authorization(ingest_token), timeout=10, compression=compression
        )

    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not Span.objects.exists()
