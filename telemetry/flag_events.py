"""Feature-flag evaluations out of OTLP span events and log records.

Pure code with no Django imports. Two carriers say the same thing:
- a span event named `feature_flag.evaluation` (older senders: `feature_flag`),
  as the OpenFeature Python and Go hooks add to the current span;
- a log record whose event name (LogRecord.event_name, or the `event.name`
  attribute of older senders) is `feature_flag.evaluation`, as the JavaScript
  EventHook emits through the OTel logs SDK.

Both become one Evaluation. The invariants kept here:
- every current attribute name and its deprecated predecessors are read, the
  current one winning when both are present;
- the cohort of an evaluation is `error:<error.type>` when it ended in an
  error (a provider outage is a regression too), else its variant, else its
  value in one canonical text form (so `true`, `"true"` and JSON `true` are one
  cohort, whichever SDK sent them);
- attribution (find_request) walks parent links only inside the evaluating
  service, and says "missing" rather than guessing when a link has not arrived.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson

from telemetry import otlp

EVENT_NAMES = tuple(sorted(otlp.FLAG_EVENT_NAMES))
KEY = "feature_flag.key"
# Current name first, then the deprecated ones (semantic-conventions
# model/feature-flags/deprecated); `feature_flag.reason` is what early
# js-sdk-contrib hooks sent.
VARIANT_NAMES = ("feature_flag.result.variant", "feature_flag.variant")
VALUE_NAMES = ("feature_flag.result.value",)
PROVIDER_NAMES = ("feature_flag.provider.name", "feature_flag.provider_name")
REASON_NAMES = (
    "feature_flag.result.reason",
    "feature_flag.evaluation.reason",
    "feature_flag.reason",
)
CONTEXT_ID_NAMES = ("feature_flag.context.id",)
SET_ID_NAMES = ("feature_flag.set.id",)
VERSION_NAMES = ("feature_flag.version",)
ERROR_TYPE_NAMES = ("error.type",)
ERROR_MESSAGE_NAMES = ("error.message", "feature_flag.evaluation.error.message")
EVENT_NAME_ATTRIBUTE = "event.name"

ERROR_COHORT_PREFIX = "error:"
NO_VALUE_COHORT = "(no value)"
MAX_KEY_CHARS = 200  # flag keys, cohorts, variants, reasons: labels, not payloads
MAX_VALUE_CHARS = 1000
SPAN_EVENT = "span_event"
LOG = "log"
# Cheap test on a span's events JSON before decoding it; matches both event
# names, whether orjson wrote it (no spaces) or PostgreSQL returned the jsonb.
_EVENTS_MARKER = "feature_flag"


class Evaluation(NamedTuple):
    """One flag evaluation, carrier-independent.

    A NamedTuple, not a frozen dataclass: ingest makes one per evaluation, and
    a frozen dataclass of 17 fields takes twenty times as long to build.
    """

    trace_id: bytes  # b"" when the log record had no trace context
    span_id: bytes  # the span that evaluated: the event's span, or the log's active span
    service: str
    environment: str
    at: datetime
    flag: str
    cohort: str
    variant: str = ""
    value: str = ""
    provider: str = ""
    reason: str = ""
    context_id: str = ""
    set_id: str = ""
    flag_version: str = ""
    error_type: str = ""
    error_message: str = ""
    carrier: str = SPAN_EVENT


def _label(value, limit: int = MAX_KEY_CHARS) -> str:
    if value.__class__ is str:  # the common case first: this runs per attribute
        return value[:limit]
    if value is None:
        return ""
    return canonical_value(value)[:limit]


def canonical_value(value) -> str:
    """One text per flag value, whoever encoded it.

    The Python hook JSON-encodes values (`"on"`, `true`); the JavaScript hooks
    send them as typed attributes (`on`, true). A string that is JSON is read
    as JSON, then strings stay bare and everything else is compact JSON.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
        if isinstance(value, str):
            # JSON can spell a NUL ("\u0000"), which PostgreSQL text and jsonb refuse.
            return value.replace("\x00", "\ufffd")
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def cohort_of(*, variant: str, value: str, error_type: str) -> str:
    return _cohort(variant, value, error_type)


def _cohort(variant: str, value: str, error_type: str) -> str:
    if error_type:
        return (ERROR_COHORT_PREFIX + error_type)[:MAX_KEY_CHARS]
    if variant:
        return variant[:MAX_KEY_CHARS]
    if value:
        return value[:MAX_KEY_CHARS]
    return NO_VALUE_COHORT


# Where each attribute name goes in evaluation_fields()'s result, and its rank
# among the names of that field (0 for the current name).
_SLOTS = {
    name: (position, rank)
    for position, names in (
        (0, (KEY,)), (2, VARIANT_NAMES), (3, VALUE_NAMES), (4, PROVIDER_NAMES),
        (5, REASON_NAMES), (6, CONTEXT_ID_NAMES), (7, SET_ID_NAMES), (8, VERSION_NAMES),
        (9, ERROR_TYPE_NAMES), (10, ERROR_MESSAGE_NAMES),
    )
    for rank, name in enumerate(names)
}  # fmt: skip
_UNSET_RANK = len(_SLOTS)


def evaluation_from_attributes(
    attributes: dict,
    *,
    trace_id: bytes,
    span_id: bytes,
    service: str,
    environment: str,
    at: datetime,
    carrier: str,
    body_value=None,
) -> Evaluation | None:
    """An Evaluation from an event's attributes; None when no flag key is named."""
    return _evaluation(
        attributes, trace_id, span_id, service, environment, at, carrier, body_value
    )


def _evaluation(attributes, trace_id, span_id, service, environment, at, carrier, body_value):
    fields = evaluation_fields(attributes, body_value)
    if fields is None:
        return None
    return Evaluation(trace_id, span_id, service, environment, at, *fields, carrier)


# What evaluation_fields() returns, in Evaluation's order.
FIELDS = Evaluation._fields[Evaluation._fields.index("flag") : Evaluation._fields.index("carrier")]


def evaluation_fields(attributes: dict, body_value=None) -> tuple | None:
    """The evaluation's FIELDS from an event's attributes; None when no flag key is named.

    Ingest calls this once per evaluation, and a few flags and variants make
    nearly all of them: the results are remembered, by the attributes as sent
    when they name no context id, else by what was picked from them.
    """
    if body_value is None and _CONTEXT_ID_NAME not in attributes:
        try:
            key = tuple(attributes.items())
            fields = _AS_SENT.get(key, _UNKNOWN)
        except TypeError:  # an array or map value: not hashable, and rare
            key = fields = _UNKNOWN
        if fields is _UNKNOWN:
            fields = _picked_fields(attributes, None)
            if key is not _UNKNOWN:
                _remember(_AS_SENT, key, [value for _, value in key], fields)
        return fields
    return _picked_fields(attributes, body_value)


def _picked_fields(attributes: dict, body_value) -> tuple | None:
    """One pass over the attributes, keeping for each field its best-ranked name that is set."""
    picked = [None] * 11
    ranks = [_UNSET_RANK] * 11
    for name, raw in attributes.items():
        slot = _SLOTS.get(name)
        if slot is None or raw is None or raw == "":
            continue
        position, rank = slot
        if rank < ranks[position]:
            picked[position], ranks[position] = raw, rank
    if picked[0] is None:
        return None
    context_id = picked[_CONTEXT_ID]
    # The key: every input but the context id, which differs from user to user.
    picked[_CONTEXT_ID] = body_value
    key = tuple(picked)
    try:
        fields = _PICKED.get(key, _UNKNOWN)
    except TypeError:
        fields = _UNKNOWN
    if fields is _UNKNOWN:
        fields = _labelled(key)
        _remember(_PICKED, key, key, fields)
    if fields is None or context_id is None:
        return fields
    return (*fields[:_CONTEXT_ID], _label(context_id), *fields[_CONTEXT_ID + 1 :])


_CONTEXT_ID = 6  # in _SLOTS and in FIELDS alike
_CONTEXT_ID_NAME = CONTEXT_ID_NAMES[0]
# evaluation_fields()'s results: labelling (a JSON parse for the value) cost
# more than the pick. Bounded, and emptied when full.
_AS_SENT: dict[tuple, tuple | None] = {}
_PICKED: dict[tuple, tuple | None] = {}
_MEMO_SIZE = 4096
_UNKNOWN = object()


def _remember(memo: dict, key: tuple, values, fields: tuple | None) -> None:
    # Only text: 1, 1.0 and True are equal keys, though each has its own canonical value.
    if all(value is None or value.__class__ is str for value in values):
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = fields


def _labelled(picked: tuple) -> tuple | None:
    """FIELDS from the raw values picked (the body's value in the context id's place)."""
    raw_value = picked[3] if picked[3] is not None else picked[_CONTEXT_ID]
    value = "" if raw_value is None else canonical_value(raw_value)[:MAX_VALUE_CHARS]
    flag, variant, error_type = _label(picked[0]), _label(picked[2]), _label(picked[9])
    if not flag:
        return None
    return (
        flag, _cohort(variant, value, error_type), variant, value, _label(picked[4]),
        _label(picked[5]).lower(), "", _label(picked[7]), _label(picked[8]), error_type,
        _label(picked[10], MAX_VALUE_CHARS),
    )  # fmt: skip


def time_of(unix_nano: int, fallback: datetime) -> datetime:
    if not unix_nano:
        return fallback
    # Positional: a fifth cheaper than microseconds=, and this runs per evaluation.
    return otlp.EPOCH + timedelta(0, 0, unix_nano // 1000)


# Span events.


def from_span_events(
    events: Iterable[dict],
    *,
    trace_id: bytes,
    span_id: bytes,
    service: str,
    environment: str,
    span_start: datetime,
) -> list[Evaluation]:
    """Evaluations among a span's events, in the form telemetry.otlp stores them."""
    found = []
    for event in events:
        if event.get("name") not in EVENT_NAMES:
            continue
        at = time_of(int(event.get("time_unix_nano") or 0), span_start)
        evaluation = _evaluation(event.get("attributes") or {}, trace_id, span_id, service,
                                 environment, at, SPAN_EVENT, None)  # fmt: skip
        if evaluation is not None:
            found.append(evaluation)
    return found


_ROW = {name: index for index, name in enumerate(otlp.SPAN_COLUMNS)}
_EVENTS, _TRACE, _SPAN, _SERVICE, _ENVIRONMENT, _START = (
    _ROW[name] for name in ("events", "trace_id", "span_id", "service", "environment", "start_time")
)


def from_span_rows(rows: Iterable[tuple]) -> list[Evaluation]:
    """Evaluations in span rows as telemetry.otlp.spans_to_rows() makes them."""
    return [
        Evaluation(bytes(row[_TRACE]), bytes(row[_SPAN]), row[_SERVICE], row[_ENVIRONMENT], at,
                   *fields, SPAN_EVENT)  # fmt: skip
        for row, at, fields in span_row_evaluations(rows)
    ]


def span_row_evaluations(rows: Iterable[tuple]) -> Iterator[tuple[tuple, datetime, tuple]]:
    """(row, time, evaluation_fields()) of each evaluation event in span rows, in order."""
    for row, unix_nano, attributes in evaluation_events(rows):
        fields = evaluation_fields(attributes)
        if fields is not None:
            yield row, time_of(unix_nano, row[_START]), fields


def evaluation_events(rows: Iterable[tuple]) -> otlp.EvaluationEvents:
    """The flag evaluation events of span rows, read back from their events JSON.

    What the decoder picks as it converts the events (otlp.DecodedBatch.evaluation_events).
    """
    found = otlp.EvaluationEvents()
    for row in rows:
        events = row[_EVENTS]
        if isinstance(events, str):
            if _EVENTS_MARKER not in events:
                continue
            events = orjson.loads(events)
        # else: already decoded, as PostgreSQL returns the jsonb of a retried batch's rows.
        for event in events:
            if event.get("name") in EVENT_NAMES:
                unix_nano = int(event.get("time_unix_nano") or 0)
                found.add(row, unix_nano, event.get("attributes") or {})
    return found


# Log records.


@dataclass
class LogEvaluations:
    evaluations: list[Evaluation] = field(default_factory=list)
    # Accepted and not kept: Monoenv is not a log store.
    other_records: int = 0


def from_logs_request(request, *, received_at: datetime) -> LogEvaluations:
    """Evaluations among the records of an ExportLogsServiceRequest."""
    found = LogEvaluations()
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        service = str(resource.get("service.name") or otlp.UNKNOWN_SERVICE)
        environment = str(
            resource.get("deployment.environment.name")
            or resource.get("deployment.environment")
            or ""
        )
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                evaluation = _from_log_record(record, service, environment, received_at)
                if evaluation is None:
                    found.other_records += 1
                else:
                    found.evaluations.append(evaluation)
    return found


def _from_log_record(record, service: str, environment: str, received_at: datetime):
    attributes = _attributes(record.attributes)
    name = getattr(record, "event_name", "") or attributes.get(EVENT_NAME_ATTRIBUTE) or ""
    if name not in EVENT_NAMES:
        return None
    body = _any_value(record.body)
    return evaluation_from_attributes(
        attributes,
        trace_id=bytes(record.trace_id) if len(record.trace_id) == 16 else b"",
        span_id=bytes(record.span_id) if len(record.span_id) == 8 else b"",
        service=service,
        environment=environment,
        at=time_of(record.time_unix_nano or record.observed_time_unix_nano, received_at),
        carrier=LOG,
        # Older log-based events carried the value in the body's `value`.
        body_value=body.get("value") if isinstance(body, dict) else None,
    )


def _attributes(key_values, depth: int = 0) -> dict:
    return {item.key: _any_value(item.value, depth) for item in key_values}


def _any_value(any_value, depth: int = 0):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value") and depth >= otlp.MAX_VALUE_DEPTH:
        return None  # deeper than any SDK nests; ignored, not fatal to the batch
    if kind == "array_value":
        return [_any_value(item, depth + 1) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(any_value.kvlist_value.values, depth + 1)
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    value = getattr(any_value, kind)
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


# Attribution.


class SpanNode(NamedTuple):
    """What attribution needs to know of one stored span."""

    parent_span_id: bytes | None
    service: str
    is_request: bool  # a SERVER or CONSUMER span (telemetry.spans.REQUEST_KINDS)


FOUND, MISSING, NO_REQUEST = "found", "missing", "no_request"
# Deeper than any real call stack inside one service; also stops parent cycles.
MAX_DEPTH = 256


def find_request(span_id: bytes, service: str, spans: dict[bytes, SpanNode]) -> tuple[str, bytes]:
    """The service's request span that encloses span_id, walking parent links.

    Returns (FOUND, request span id); (MISSING, b"") when a span on the way has
    not arrived (yet); (NO_REQUEST, b"") when the walk reaches the root, or
    leaves the service, without meeting one of the service's request spans.
    """
    current = span_id
    for _ in range(MAX_DEPTH):
        node = spans.get(current)
        if node is None:
            return MISSING, b""
        if node.service != service:
            return NO_REQUEST, b""
        if node.is_request:
            return FOUND, current
        if not node.parent_span_id:
            return NO_REQUEST, b""
        current = node.parent_span_id
    return NO_REQUEST, b""
