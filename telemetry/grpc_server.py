"""OTLP/gRPC receivers with the HTTP receivers' semantics.

TraceService/Export stores spans (or spools them, see telemetry/ingest.py);
MetricsService/Export and LogsService/Export check the same token and
limits, count what they get and answer success (telemetry/receiver.py).
"""

import logging
from concurrent import futures

import grpc
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from telemetry import asgi, auth, ingest, receiver
from telemetry.ingest import StoreUnavailable, TooManySpans
from telemetry.models import TokenScope

logger = logging.getLogger(__name__)


def _export(context, accept, request):
    """Authenticate, then hand the request to accept(request); abort as OTLP says."""
    try:
        # As the HTTP receivers do: connections past their age or broken are
        # dropped, and one this thread used within the last second is not
        # health-checked again (a SELECT 1 round trip on every batch).
        return asgi.with_fresh_connections(_authenticate_and_accept, context, accept, request)
    except (StoreUnavailable, DatabaseError):
        # DatabaseError: a token never confirmed before the database went down.
        _abort_with_retry(
            context,
            grpc.StatusCode.UNAVAILABLE,
            "cannot store spans now; retry",
            seconds=settings.MONOENV_RETRY_AFTER_SECONDS,
        )
    except (TooManySpans, receiver.TooManyItems) as exc:
        # Without RetryInfo the exporters do not retry this, as is right.
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    finally:
        close_old_connections()


def _authenticate_and_accept(context, accept, request):
    _authenticate(context)
    return accept(request)


def _authenticate(context) -> None:
    metadata = dict(context.invocation_metadata())
    raw_token = auth.token_from_header(metadata.get("authorization"))
    try:
        auth.authenticate(raw_token, scope=TokenScope.INGEST)
    except auth.Unauthenticated as exc:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    except auth.Forbidden as exc:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    except auth.RateLimited as exc:
        # With RetryInfo the exporters retry RESOURCE_EXHAUSTED after the delay.
        _abort_with_retry(
            context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), seconds=exc.retry_after
        )


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):  # noqa: N802 - the name is the RPC's
        return _export(context, receiver.accept_traces, request)


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):  # noqa: N802 - the name is the RPC's
        return _export(context, receiver.accept_metrics, request)


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):  # noqa: N802 - the name is the RPC's
        return _export(context, receiver.accept_logs, request)


def _abort_with_retry(context, code: grpc.StatusCode, message: str, *, seconds: int) -> None:
    """Abort with RetryInfo, which the OpenTelemetry exporters honour."""
    retry_info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds))
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(retry_info)
    context.set_trailing_metadata(
        (
            ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString()),
        )
    )
    context.abort(code, message)


def build_server(address: str, *, threads: int = 8) -> tuple[grpc.Server, int]:
    """A server bound to address (port 0 picks a free one); returns it and its port."""
    max_bytes = settings.MONOENV_MAX_REQUEST_BYTES
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="otlp-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
        # grpc refuses RPCs past this with RESOURCE_EXHAUSTED and no RetryInfo,
        # which the Go and Java exporters drop. The ingest slots answer
        # UNAVAILABLE with RetryInfo in milliseconds long before; this is only
        # a guard on memory. Queued RPCs are not read until a thread takes them.
        maximum_concurrent_rpcs=threads * 32,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(), server)
    port = server.add_insecure_port(address)
    ingest.start_replayer()
    return server, port
