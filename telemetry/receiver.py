"""OTLP/HTTP request handling shared by the WSGI view and the ASGI server.

Both front ends call the same three steps, in order, each of which either
lets the request go on or returns the final Reply: check_request() (method
and content type), check_token() and receive() (body, decoding, hand-off).
Every reply is an OTLP answer in the request's own content type, with the
status codes the OTLP specification gives (see docs/ingest.md).
"""

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings
from django.db import DatabaseError
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry import auth, bodies, otlp, otlp_signals
from telemetry.ingest import (
    StoreUnavailable,
    TooManySpans,
    ingest_logs_request,
    ingest_request,
)
from telemetry.models import TokenScope

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_DECODERS = {PROTOBUF: otlp.decode_protobuf, JSON: otlp.decode_json}
# How often the count of metrics and logs received (and not kept) is logged.
UNSTORED_LOG_SECONDS = 600


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class TooManyItems(ValueError):
    """More data points or log records in one request than the per-request limit."""


def accept_traces(request, body: bytes | None = None):
    return ingest_request(request, body=body).export_response()


def accept_metrics(request, body: bytes | None = None):
    _count_unstored("metric data points", otlp_signals.count_data_points(request))
    return otlp_signals.metrics_response()


def accept_logs(request, body: bytes | None = None):
    _check_count("log records", otlp_signals.count_log_records(request))
    # Flag evaluations are stored; the other records are counted, not kept.
    batch = ingest_logs_request(request, body=body)
    _count_unstored("log records", batch.other_records)
    return batch.export_response()


@dataclass(frozen=True)
class Signal:
    name: str
    request_class: type
    accept: object  # (request, body) -> the export response message


SIGNALS = {
    "/v1/traces": Signal("traces", ExportTraceServiceRequest, accept_traces),
    "/v1/metrics": Signal("metrics", ExportMetricsServiceRequest, accept_metrics),
    "/v1/logs": Signal("logs", ExportLogsServiceRequest, accept_logs),
}


class _Unstored:
    """What was received but not kept, per process, logged now and then."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.logged_at = float("-inf")


_unstored = _Unstored()


def _check_count(kind: str, count: int) -> None:
    limit = settings.MONOENV_MAX_SPANS_PER_REQUEST
    if count > limit:
        raise TooManyItems(f"{count} {kind} in one request; the limit is {limit}")


def _count_unstored(kind: str, count: int) -> None:
    _check_count(kind, count)
    with _unstored.lock:
        _unstored.counts[kind] += count
        now = time.monotonic()
        if now - _unstored.logged_at < UNSTORED_LOG_SECONDS:
            return
        counts, _unstored.counts, _unstored.logged_at = _unstored.counts, Counter(), now
    summary = ", ".join(f"{number} {what}" for what, number in counts.items())
    logger.info(
        "Accepted %s; Monoenv does not store metrics, nor logs other than flag evaluations",
        summary,
    )


def unstored_counts() -> dict[str, int]:
    """Metrics and logs accepted by this process since the last log line."""
    with _unstored.lock:
        return dict(_unstored.counts)


def check_request(method: str, content_type: str) -> Reply | None:
    if method != "POST":
        return Reply(405, "text/plain", b"", {"Allow": "POST"})
    if content_type not in _DECODERS:
        return status_reply(
            JSON, 415, code_pb2.INVALID_ARGUMENT, "use application/x-protobuf or application/json"
        )
    return None


def check_token(content_type: str, authorization: str | None) -> Reply | None:
    try:
        auth.authenticate(auth.token_from_header(authorization), scope=TokenScope.INGEST)
    except auth.Unauthenticated as exc:
        return status_reply(content_type, 401, code_pb2.UNAUTHENTICATED, str(exc))
    except auth.Forbidden as exc:
        return status_reply(content_type, 403, code_pb2.PERMISSION_DENIED, str(exc))
    except auth.RateLimited as exc:
        # The OTLP exporters retry a 429 after its Retry-After.
        reply = status_reply(content_type, 429, code_pb2.RESOURCE_EXHAUSTED, str(exc))
        reply.headers["Retry-After"] = str(exc.retry_after)
        return reply
    except DatabaseError:
        # A token never seen before the database went down: a 503, which
        # exporters retry, not a 500, which they drop.
        return unavailable(content_type)
    return None


def receive(signal: Signal, content_type: str, content_encoding: str, stream: BinaryIO) -> Reply:
    try:
        body = bodies.read_body(stream, content_encoding, settings.MONOENV_MAX_REQUEST_BYTES)
        export_request = _DECODERS[content_type](body, signal.request_class)
        spool_bytes = body if content_type == PROTOBUF else None
        response = signal.accept(export_request, spool_bytes)
    except (bodies.BodyTooLarge, TooManySpans, TooManyItems) as exc:
        return status_reply(content_type, 413, code_pb2.RESOURCE_EXHAUSTED, str(exc))
    except bodies.UnsupportedEncoding as exc:
        return status_reply(content_type, 415, code_pb2.INVALID_ARGUMENT, str(exc))
    except (bodies.CorruptBody, otlp.UndecodableRequest) as exc:
        return status_reply(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
    except StoreUnavailable:
        return unavailable(content_type)
    return message_reply(content_type, 200, response)


def unavailable(content_type: str) -> Reply:
    reply = status_reply(content_type, 503, code_pb2.UNAVAILABLE, "cannot store spans now; retry")
    reply.headers["Retry-After"] = str(settings.MONOENV_RETRY_AFTER_SECONDS)
    return reply


def status_reply(content_type: str, http_status: int, code: int, text: str) -> Reply:
    return message_reply(content_type, http_status, status_pb2.Status(code=code, message=text))


def message_reply(content_type: str, http_status: int, message) -> Reply:
    if content_type == PROTOBUF:
        body = message.SerializeToString()
    else:
        body = json_format.MessageToJson(message, indent=None).encode()
    return Reply(http_status, content_type, body)
