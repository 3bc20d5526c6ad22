"""OTLP trace decoding: request bodies in, span rows out.

Pure code with no Django imports, shared by the HTTP and gRPC receivers and
the ingest benchmark.
"""

import base64
import binascii
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SPAN_KIND_SERVER = 2
STATUS_CODE_OK = 1
STATUS_CODE_ERROR = 2
UNKNOWN_SERVICE = "unknown_service"
# Arrays and maps nested deeper than this are refused: no SDK sends them, and
# unbounded nesting would exhaust the stack.
MAX_VALUE_DEPTH = 16
# Span events and log events that carry a feature-flag evaluation
# (telemetry/flag_events.py reads them); older OpenFeature hooks name them
# `feature_flag`, the name before the semantic conventions renamed it.
FLAG_EVENT_NAMES = frozenset(("feature_flag.evaluation", "feature_flag"))

# Column order of the rows that spans_to_rows() yields; the store COPYs them as is.
SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "service", "service_version", "environment",
    "name", "kind", "start_time", "duration_us", "status_code", "status_message",
    "http_route", "http_status", "http_method", "is_error", "exception_type",
    "attributes", "resource_attributes", "events",
)  # fmt: skip
START_TIME_INDEX = SPAN_COLUMNS.index("start_time")
SERVICE_INDEX = SPAN_COLUMNS.index("service")
VERSION_INDEX = SPAN_COLUMNS.index("service_version")

# OTLP/JSON carries these ids as hex; protobuf's JSON mapping expects base64.
_HEX_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_PARENT_ID_KEYS = ("parentSpanId", "parent_span_id")
_NOT_AN_ID = b"\x00"


class UndecodableRequest(ValueError):
    """The body is not the expected OTLP export request in the claimed encoding."""


@dataclass(frozen=True)
class Limits:
    oldest: datetime
    newest: datetime
    retention_days: int
    max_attribute_value_bytes: int
    max_attributes: int = 256
    max_future_seconds: int = 3600
    # The SDKs keep 128 events a span by default; far more is a runaway loop.
    max_events: int = 1024


@dataclass
class EvaluationEvents:
    """The span events named in FLAG_EVENT_NAMES, in row order, as three parallel lists.

    Picked while the decoder converts the events, so ingest need not parse
    their JSON back. Parallel lists rather than a tuple per event: the tuples
    would live as long as the batch, and so many surviving objects set off the
    garbage collector, which cost more than the JSON parse they save.
    """

    rows: list[tuple] = field(default_factory=list)  # the span row holding each event
    times: list[int] = field(default_factory=list)  # time_unix_nano, 0 when unset
    attributes: list[dict] = field(default_factory=list)

    def add(self, row: tuple, time_unix_nano: int, attributes: dict) -> None:
        self.rows.append(row)
        self.times.append(time_unix_nano)
        self.attributes.append(attributes)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        """(row, time_unix_nano, attributes) of each event."""
        return zip(self.rows, self.times, self.attributes, strict=True)


@dataclass
class DecodedBatch:
    """Rows to store, spans rejected by reason, and what was trimmed from the rest.

    Trimming follows the OpenTelemetry attribute limits: values are truncated
    and surplus attributes and events dropped, and the span is kept.
    """

    rows: list[tuple] = field(default_factory=list)
    rejections: Counter = field(default_factory=Counter)
    trimmed: Counter = field(default_factory=Counter)
    evaluation_events: EvaluationEvents = field(default_factory=EvaluationEvents)

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    def export_response(self) -> ExportTraceServiceResponse:
        """The answer to the client: a partial success names what was rejected.

        Trimming alone is a partial success with rejected_spans 0, the warning
        the OTLP specification allows; the exporters do not retry either.
        """
        response = ExportTraceServiceResponse()
        message = "; ".join(m for m in (self.rejection_message(), self.trim_message()) if m)
        if self.rejected:
            response.partial_success.rejected_spans = self.rejected
        if message:
            response.partial_success.error_message = message
        return response

    def rejection_message(self) -> str:
        if not self.rejections:
            return ""
        reasons = "; ".join(f"{count} {reason}" for reason, count in self.rejections.items())
        return f"rejected {self.rejected} span(s): {reasons}"

    def trim_message(self) -> str:
        if not self.trimmed:
            return ""
        items = ", ".join(f"{count} {what}" for what, count in self.trimmed.items())
        return f"kept every accepted span but trimmed {items}"


def decode_protobuf(body: bytes, message_class=ExportTraceServiceRequest):
    """Decode an OTLP export request (traces unless another message class is given)."""
    request = message_class()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise UndecodableRequest(f"invalid protobuf: {exc}") from exc
    return request


def decode_json(body: bytes, message_class=ExportTraceServiceRequest):
    """Decode OTLP/JSON, which differs from protobuf's JSON mapping in its ids."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UndecodableRequest("invalid JSON: body is not UTF-8") from exc
    except ValueError as exc:
        raise UndecodableRequest(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise UndecodableRequest("invalid JSON: nested too deeply") from exc
    if not isinstance(document, dict):
        raise UndecodableRequest("invalid JSON: the body must be an object")
    try:
        _hex_ids_to_base64(document)
        return json_format.ParseDict(document, message_class(), ignore_unknown_fields=True)
    except RecursionError as exc:
        raise UndecodableRequest("invalid OTLP/JSON: nested too deeply") from exc
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise UndecodableRequest(f"invalid OTLP/JSON: {exc}") from exc


def _hex_ids_to_base64(node) -> None:
    if isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _HEX_ID_KEYS and isinstance(value, str):
                node[key] = _hex_to_base64(value, parent=key in _PARENT_ID_KEYS)
            else:
                _hex_ids_to_base64(value)


def _hex_to_base64(value: str, *, parent: bool = False) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        # Not hex: an id of a length no span may have, so the span is rejected
        # by name, not the batch. An empty parent would pass for a root.
        raw = _NOT_AN_ID if parent else b""
    return base64.b64encode(raw).decode()


def spans_to_rows(request: ExportTraceServiceRequest, limits: Limits) -> DecodedBatch:
    batch = DecodedBatch()
    trim = _Trimmer(limits, batch.trimmed)
    picked = batch.evaluation_events
    for resource_spans in request.resource_spans:
        try:
            context = _ResourceContext(trim.attributes(resource_spans.resource.attributes))
        except RejectedSpan as rejection:
            spans = sum(len(scope_spans.spans) for scope_spans in resource_spans.scope_spans)
            batch.rejections[f"resource {rejection.reason}"] += spans
            continue
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    batch.rows.append(_span_row(span, context, limits, trim, picked))
                except RejectedSpan as rejection:
                    batch.rejections[rejection.reason] += 1
    return batch


class _Trimmer:
    """Applies the attribute limits while converting, and counts what it cut.

    Strings (and byte arrays) are cut to max_attribute_value_bytes of UTF-8
    at a character boundary, inside arrays and maps too; attributes past
    max_attributes are dropped, keeping the first ones in the order sent.
    """

    def __init__(self, limits: Limits, counts: Counter):
        self.max_bytes = limits.max_attribute_value_bytes
        self.max_attributes = limits.max_attributes
        self.counts = counts
        self.truncated_label = f"value(s) truncated to {self.max_bytes} bytes"
        self.dropped_label = f"attribute(s) dropped past {self.max_attributes}"

    def attributes(self, key_values, depth: int = 0) -> dict:
        if len(key_values) > self.max_attributes:
            self.counts[self.dropped_label] += len(key_values) - self.max_attributes
            key_values = key_values[: self.max_attributes]
        return {_text(item.key): self.value(item.value, depth) for item in key_values}

    def value(self, any_value, depth: int = 0):
        kind = any_value.WhichOneof("value")
        if kind == "string_value":
            return self.text(any_value.string_value)
        if kind is None:
            return None
        if kind in ("array_value", "kvlist_value") and depth >= MAX_VALUE_DEPTH:
            raise RejectedSpan(f"attribute value nested deeper than {MAX_VALUE_DEPTH} levels")
        if kind == "array_value":
            return [self.value(item, depth + 1) for item in any_value.array_value.values]
        if kind == "kvlist_value":
            return self.attributes(any_value.kvlist_value.values, depth + 1)
        if kind == "bytes_value":
            raw = any_value.bytes_value
            # base64 takes 4 bytes for every 3: cut so the stored text fits.
            room = self.max_bytes // 4 * 3
            if len(raw) > room:
                self.counts[self.truncated_label] += 1
                raw = raw[:room]
            return base64.b64encode(raw).decode()
        return _plain_value(any_value, kind)

    def text(self, value: str, *, count: bool = True) -> str:
        # Four bytes per character at most, so shorter strings need no encoding.
        if len(value) * 4 > self.max_bytes:
            encoded = value.encode()
            if len(encoded) > self.max_bytes:
                self.counts[self.truncated_label] += count
                value = encoded[: self.max_bytes].decode("utf-8", "ignore")
        return _text(value)


class RejectedSpan(Exception):
    def __init__(self, reason: str):
        self.reason = reason


class _ResourceContext:
    """What every span of one resource shares, worked out once."""

    def __init__(self, resource: dict):
        self.service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        self.version = str(resource.get("service.version") or "")
        self.environment = str(
            resource.get("deployment.environment.name")
            or resource.get("deployment.environment")
            or ""
        )
        self.resource_json = _json(resource)


def _span_row(
    span, context: _ResourceContext, limits: Limits, trim: _Trimmer, picked: EvaluationEvents
) -> tuple:
    parent_span_id = _check_ids(span)
    start_time = EPOCH + timedelta(microseconds=span.start_time_unix_nano // 1000)
    if start_time < limits.oldest:
        raise RejectedSpan(f"older than the {limits.retention_days}-day retention")
    if start_time > limits.newest:
        raise RejectedSpan(f"more than {limits.max_future_seconds} s in the future")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        raise RejectedSpan("end time before start time")
    attributes = trim.attributes(span.attributes)
    events = [_event(event, trim) for event in _kept_events(span.events, limits, trim)]
    http_status = _http_status(attributes)
    name = _text(span.name)
    status_code = span.status.code
    row = (
        span.trace_id,
        span.span_id,
        parent_span_id,
        context.service,
        context.version,
        context.environment,
        name,
        span.kind,
        start_time,
        (span.end_time_unix_nano - span.start_time_unix_nano) // 1000,
        status_code,
        _text(span.status.message),
        str(attributes.get("http.route") or name),
        http_status,
        str(attributes.get("http.request.method") or attributes.get("http.method") or ""),
        _is_error(status_code, span.kind, http_status),
        # From every event, so that trimming never hides what failed.
        _exception_type(span.events, trim),
        _json(attributes),
        context.resource_json,
        _json(events),
    )
    for event in events:
        if event["name"] in FLAG_EVENT_NAMES:
            # Not picked.add(): a call less per evaluation, on the hot path.
            picked.rows.append(row)
            picked.times.append(event["time_unix_nano"])
            picked.attributes.append(event["attributes"])
    return row


def _kept_events(events, limits: Limits, trim: _Trimmer):
    if len(events) <= limits.max_events:
        return events
    trim.counts[f"event(s) dropped past {limits.max_events}"] += len(events) - limits.max_events
    return events[: limits.max_events]


def _check_ids(span) -> bytes | None:
    """Refuse spans whose ids are unusable; return the parent id, None for a root.

    An all-zero parent id is how some senders spell "no parent" (the SDKs'
    INVALID_SPAN_ID), so it means a root; any other malformed one rejects the
    span, since guessing would break its trace's tree.
    """
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise RejectedSpan("invalid trace_id (must be 16 non-zero bytes)")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise RejectedSpan("invalid span_id (must be 8 non-zero bytes)")
    parent = span.parent_span_id
    if len(parent) not in (0, 8):
        raise RejectedSpan("invalid parent_span_id (must be empty or 8 bytes, 16 hex digits)")
    return parent if any(parent) else None


def _is_error(status_code: int, kind: int, http_status: int | None) -> bool:
    # HTTP semantic conventions: a server's 5xx is its own failure, a 4xx the caller's.
    if status_code == STATUS_CODE_ERROR:
        return True
    # An explicit Ok is final; the trace API spec asks analysis tools to suppress such errors.
    if status_code == STATUS_CODE_OK:
        return False
    return kind == SPAN_KIND_SERVER and http_status is not None and http_status >= 500


def _http_status(attributes: dict) -> int | None:
    value = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    try:
        status = int(value)
    except (TypeError, ValueError):
        return None
    return status if 0 <= status < 1000 else None


def _exception_type(events, trim: _Trimmer) -> str:
    for event in events:
        if event.name == "exception":
            for attribute in event.attributes:
                if attribute.key == "exception.type":
                    return trim.text(str(_plain_value(attribute.value)), count=False)
    return ""


def _event(event, trim: _Trimmer) -> dict:
    return {
        "name": _text(event.name),
        "time_unix_nano": event.time_unix_nano,
        "attributes": trim.attributes(event.attributes),
    }


def _plain_value(any_value, kind: str | None = None):
    """A scalar AnyValue as its Python value (strings are the trimmer's job)."""
    kind = kind or any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "double_value":
        number = any_value.double_value
        # JSON has no NaN or infinity; keep them readable rather than drop them.
        return number if number == number and abs(number) != float("inf") else str(number)
    return getattr(any_value, kind)


def _text(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL characters.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _json(value) -> str:
    return orjson.dumps(value).decode()


def hex_id(raw: bytes | None) -> str:
    return binascii.hexlify(raw).decode() if raw else ""
