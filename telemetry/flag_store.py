"""Stored flag evaluations: writing them, attributing them to requests, reading cohorts.

Owner of telemetry_flagevaluation and telemetry_flagevaluationbatch. Two forms:
- a batch row (FlagEvaluationBatch) holds the span-event evaluations of one
  ingest batch that were attributed in that batch, nearly all of them: one row
  per batch, inserted in ingest's own round trip, where a row each cost ingest
  a third of its throughput;
- a FlagEvaluation row holds each other one: those sent as logs, and span
  events whose request span was not in their batch.
Reads see both through _evaluations_sql(), with the same columns.

The invariants:
- each evaluation is stored once, however often its export is retried: log
  rows by a unique key on service, trace, span, flag and time; span events
  because ingest stores only the spans it had not stored yet;
- attribution works whichever arrives first: an evaluation whose evaluating
  span and request span come in one batch is attributed at once; a log is
  attributed at once when its spans are stored already; every other one is
  attributed by attribute_pending(), which retries while the spans it needs
  may still come (MONOENV_ROLLUP_LATENESS_MINUTES), then gives up and marks
  it unresolved;
- a cohort's requests are counted once each, however many times a request
  evaluated the flag (cohort reads take DISTINCT request spans).

Apps above telemetry read evaluations only through the named functions at
the end of this module.
"""

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from telemetry import flag_events, otlp, spans
from telemetry.flag_events import Evaluation, SpanNode
from telemetry.models import Attribution, FlagEvaluation, FlagEvaluationBatch

ATTRIBUTION_BATCH = 5000
RETRY_AFTER = timedelta(seconds=30)

_COLUMNS = (
    "trace_id", "span_id", "service", "environment", "at", "flag", "cohort", "variant", "value",
    "provider", "reason", "context_id", "set_id", "flag_version", "error_type", "carrier",
    "received_at", "attribution", "attribute_after", "request_span_id", "request_start", "route",
    "request_version", "request_duration_us", "request_is_error", "request_error_type",
)  # fmt: skip
_COLUMN_LIST = ", ".join(_COLUMNS)
_COLUMN_TYPES = (
    "bytea", "bytea", "text", "text", "timestamptz", "text", "text", "text", "text",
    "text", "text", "text", "text", "text", "text", "varchar", "timestamptz", "int2",
    "timestamptz", "bytea", "timestamptz", "text", "text", "int8", "bool", "text",
)  # fmt: skip


@dataclass(frozen=True)
class _Row:
    evaluation: Evaluation
    attribution: int = Attribution.PENDING
    request: spans.LinkedSpan | None = None


def store_evaluations(evaluations: list[Evaluation], *, received_at: datetime | None = None) -> int:
    """Store evaluations once each, to be attributed by attribute_pending(); return the new.

    Call it inside the transaction that stores what carried them, so a retried
    batch neither loses nor doubles them.
    """
    return _store(evaluations, _TraceIndex(), received_at or timezone.now())


def store_log_evaluations(evaluations: list[Evaluation], *, received_at: datetime) -> int:
    """The logs receiver's hook: store once each, attributed at once if their spans are in.

    A log usually comes after its spans (the SDKs batch logs as they batch
    spans), so the trace's stored spans are looked up now; the rest wait for
    attribute_pending(). A retried export stores nothing twice.
    """
    evaluations = _unique(evaluations)
    traced = [e for e in evaluations if e.trace_id and e.span_id]
    index = _TraceIndex()
    if traced:
        times = [e.at for e in traced]
        index = _TraceIndex.of_linked(
            spans.linked_spans([e.trace_id for e in traced], min(times), max(times))
        )
    return _store(evaluations, index, received_at)


def store_from_span_rows(rows: list[tuple]) -> int:
    """The evaluations carried by span rows, once each; return how many were new.

    For callers that store span rows themselves: it skips the evaluations
    already stored (ingest stores those of the spans it stores).
    """
    found = span_evaluations(rows)
    if not found.count:
        return 0
    found.drop(_stored_keys(found.keys()))
    with transaction.atomic():
        with connection.cursor() as cursor:
            insert_batches(found, cursor)
        store_pending(found)
    return found.count


def store_new_span_rows(rows: list[tuple]) -> int:
    """The evaluations carried by span rows stored just now, in their transaction."""
    found = span_evaluations(rows)
    with connection.cursor() as cursor:
        insert_batches(found, cursor)
    store_pending(found)
    return found.count


@dataclass
class SpanEvaluations:
    """A batch's span-event evaluations: batch rows to insert, and rows still pending."""

    batches: list[tuple] = field(default_factory=list)  # FlagEvaluationBatch columns
    pending: list[tuple] = field(default_factory=list)  # FlagEvaluation columns
    count: int = 0

    def keys(self) -> list[tuple]:
        """Each evaluation's (at, trace, span, flag, service); for retry checks, not ingest."""
        return [_batch_key(batch, entry) for batch in self.batches
                for entry in orjson.loads(batch[-1])] + [
            (row[4], row[0], row[1], row[5], row[2]) for row in self.pending
        ]  # fmt: skip

    def drop(self, stored: set[tuple]) -> None:
        """Leave out the evaluations whose key is in stored."""
        if not stored:
            return
        self.pending = [row for row in self.pending if (row[4], row[0], row[1], row[5], row[2])
                        not in stored]  # fmt: skip
        batches = []
        for batch in self.batches:
            kept = [e for e in orjson.loads(batch[-1]) if _batch_key(batch, e) not in stored]
            if kept:
                batches.append((*batch[:-1], orjson.dumps(kept).decode()))
        self.batches = batches
        self.count = sum(len(orjson.loads(batch[-1])) for batch in batches) + len(self.pending)


def _batch_key(batch: tuple, entry: list) -> tuple:
    at = _from_micros(entry[2])
    return (at, bytes.fromhex(entry[0]), bytes.fromhex(entry[1]), entry[3], batch[0])


# The order of each evaluation's array in FlagEvaluationBatch.evaluations. The
# evaluation's time is in microseconds since the epoch: ingest has it as an
# integer, and reads turn it into a timestamp several times faster than they
# parse one (migration 0009 converted the ISO texts stored before).
BATCH_FIELDS = (
    "trace_id", "span_id", "at_us", "flag", "cohort", "variant", "value", "provider", "reason",
    "context_id", "set_id", "flag_version", "error_type", "attribution", "request_span_id",
    "request_start", "route", "request_version", "request_duration_us", "request_is_error",
    "request_error_type",
)  # fmt: skip
_INSERT_BATCH_SQL = (
    "INSERT INTO telemetry_flagevaluationbatch "
    "(service, environment, first_at, last_at, received_at, flags, evaluations) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def span_evaluations(
    rows: list[tuple], events: otlp.EvaluationEvents | None = None
) -> SpanEvaluations:
    """Read and attribute the evaluations of one batch of span rows, without the database.

    events: what the decoder picked for exactly these rows
    (otlp.DecodedBatch.evaluation_events); without them the rows' events JSON
    is read again. Straight from each event's fields to its stored entry, with
    the request found once per evaluating span: this runs for every
    evaluation ingested.
    """
    if events is None:
        events = flag_events.evaluation_events(rows)
    found = SpanEvaluations()
    if not events:
        return found
    index = _BatchIndex(rows)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    pending: list[Evaluation] = []
    span_row = seen = first_at = first_flag = service = environment = None
    fields_of, missing = flag_events.evaluation_fields, _MISSING
    for row, unix_nano, attributes in events:
        fields = fields_of(attributes)
        if fields is None:
            continue
        # The span's start for an event without a time, as flag_events.time_of().
        at = unix_nano // 1000 if unix_nano else _micros(row[_START])
        if row is not span_row:
            span_row, seen, first_at, first_flag = row, None, at, fields[0]
            outcome, head, tail = index.entry_parts(row)
            # The rows of one resource share these strings: a dict lookup only per resource.
            if row[_SERVICE] is not service or row[_ENVIRONMENT] is not environment:
                service, environment = row[_SERVICE], row[_ENVIRONMENT]
                entries = groups[(service, environment)]
        else:
            # One per time and flag on a span: two with neither time take the span's start.
            if seen is None:
                seen = {(first_at, first_flag)}
            if (at, fields[0]) in seen:
                continue
            seen.add((at, fields[0]))
        if outcome == missing:
            pending.append(Evaluation(row[_TRACE], row[_SPAN], row[_SERVICE], row[_ENVIRONMENT],
                                      _from_micros(at), *fields, SPAN_EVENT))  # fmt: skip
        else:
            entries.append((*head, at, *fields[:_STORED_FIELDS], *tail))
    found.count = len(pending) + sum(len(entries) for entries in groups.values())
    received_at = timezone.now()
    for (service, environment), entries in groups.items():
        if entries:
            found.batches.append(_batch_row(service, environment, entries, received_at))
    found.pending = _values([_Row(e) for e in pending], received_at)
    return found


_REQUEST, _NO_REQUEST = int(Attribution.REQUEST), int(Attribution.NO_REQUEST)
_MISSING, SPAN_EVENT = flag_events.MISSING, flag_events.SPAN_EVENT
# evaluation_fields() from flag to error_type, as BATCH_FIELDS has them (not the message).
_STORED_FIELDS = flag_events.FIELDS.index("error_type") + 1


_NO_REQUEST_TAIL = (_NO_REQUEST, None, None, "", "", None, None, "")


def _request_tail(request: tuple, request_hex: str) -> tuple:
    """The entry's fields from attribution on, for a request span row."""
    return (
        _REQUEST, request_hex, request[_START], request[_ROUTE], request[_VERSION],
        request[_DURATION], request[_IS_ERROR],
        spans.error_type(request[_EXCEPTION], request[_STATUS_MESSAGE]),
    )  # fmt: skip


def _batch_row(service: str, environment: str, entries: list, received_at: datetime) -> tuple:
    times = [entry[2] for entry in entries]
    flags = sorted({entry[3] for entry in entries})
    payload = orjson.dumps(entries).decode()
    first, last = _from_micros(min(times)), _from_micros(max(times))
    return (service, environment, first, last, received_at, flags, payload)


_MICROSECOND = timedelta(microseconds=1)


def _micros(at: datetime) -> int:
    return (at - otlp.EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return otlp.EPOCH + timedelta(microseconds=micros)


def insert_batches(found: SpanEvaluations, cursor) -> None:
    """Insert the batch rows; inside a pipeline this costs ingest no round trip of its own."""
    if not found.batches:
        return
    # Parameters bound by the server: Django's client-side binding would quote
    # the whole JSON into the statement, and the server parse it back.
    with psycopg.Cursor(cursor.connection) as raw:
        for batch in found.batches:
            raw.execute(_INSERT_BATCH_SQL, batch)


def store_pending(found: SpanEvaluations) -> None:
    """COPY the evaluations still waiting for their request span (rare: no savepoint needed)."""
    if found.pending:
        with connection.cursor() as cursor:
            _copy(cursor.cursor, "telemetry_flagevaluation", found.pending)


def _stored_keys(keys: list[tuple]) -> set[tuple]:
    """Which of these (at, trace, span, flag, service) keys are stored already."""
    if not keys:
        return set()
    times = [key[0] for key in keys]
    source, params = _evaluations_sql(min(times), max(times) + timedelta(microseconds=1))
    rows = _fetch(
        f"SELECT at, trace_id, span_id, flag, service FROM ({source}) e "
        "WHERE trace_id = ANY(%s)",
        [*params, list({key[1] for key in keys})],
    )
    return {(at, bytes(trace), bytes(span), flag, service) for at, trace, span, flag, service in rows}  # noqa: E501


def _unique(evaluations: list[Evaluation]) -> list[Evaluation]:
    """One evaluation per key: two on one span with neither time take the span's start."""
    seen, kept = set(), []
    for e in evaluations:
        key = (e.at, e.trace_id, e.span_id, e.flag, e.service)
        if key not in seen:
            seen.add(key)
            kept.append(e)
    return kept


def _store(evaluations: list[Evaluation], index: "_TraceIndex", received_at: datetime) -> int:
    if not evaluations:
        return 0
    rows = _values([_row_for(evaluation, index) for evaluation in evaluations], received_at)
    try:
        # COPY is several times cheaper than binding arrays; duplicates are rare.
        with transaction.atomic(), connection.cursor() as cursor:
            _copy(cursor.cursor, "telemetry_flagevaluation", rows)
        return len(rows)
    except psycopg.errors.UniqueViolation:
        return _store_skipping_duplicates(rows)


def _store_skipping_duplicates(rows: list[tuple]) -> int:
    """A retried export: stage the rows, keep only those not stored yet."""
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(
            "CREATE TEMP TABLE flag_evaluation_staging ON COMMIT DROP AS "
            f"SELECT {_COLUMN_LIST} FROM telemetry_flagevaluation WITH NO DATA"
        )
        _copy(raw, "flag_evaluation_staging", rows)
        raw.execute(
            f"INSERT INTO telemetry_flagevaluation ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} "
            "FROM flag_evaluation_staging ON CONFLICT DO NOTHING"
        )
        stored = raw.rowcount
        # ON COMMIT DROP alone fails a second retry inside one outer transaction.
        raw.execute("DROP TABLE flag_evaluation_staging")
        return stored


def _copy(raw_cursor, table: str, rows: list[tuple]) -> None:
    # Binary: half the time of text COPY for these bytea, timestamp and text columns.
    with raw_cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COLUMN_TYPES)
        for row in rows:
            copy.write_row(row)


_ROW_INDEX = {name: index for index, name in enumerate(otlp.SPAN_COLUMNS)}
_TRACE, _SPAN, _PARENT, _SERVICE, _KIND, _START, _ROUTE, _VERSION, _DURATION, _IS_ERROR = (
    _ROW_INDEX[name] for name in ("trace_id", "span_id", "parent_span_id", "service", "kind",
                                  "start_time", "http_route", "service_version", "duration_us",
                                  "is_error")
)  # fmt: skip
_EXCEPTION, _STATUS_MESSAGE = _ROW_INDEX["exception_type"], _ROW_INDEX["status_message"]
_ENVIRONMENT = _ROW_INDEX["environment"]
_REQUEST_KINDS = frozenset(int(kind) for kind in spans.REQUEST_KINDS)


class _BatchIndex:
    """Finds an evaluation's request span among one batch's span rows."""

    def __init__(self, rows: list[tuple]):
        self.rows = rows
        self.by_id: dict[tuple[bytes, bytes], tuple] | None = None

    def entry_parts(self, row: tuple) -> tuple[str, tuple, tuple]:
        """(outcome, head, tail) of the batch entries of evaluations on this row's span.

        An entry is head + (at, the stored evaluation fields) + tail, in
        BATCH_FIELDS order; head and tail are the same for every evaluation
        of one span, so they are worked out once per span.
        """
        span_hex = row[_SPAN].hex()
        head = (row[_TRACE].hex(), span_hex)
        # The hooks write on the current span, most often the request span itself.
        if row[_KIND] in _REQUEST_KINDS:
            return flag_events.FOUND, head, _request_tail(row, span_hex)
        outcome, request = self.resolve_row(row)
        if request is None:
            return outcome, head, _NO_REQUEST_TAIL
        return outcome, head, _request_tail(request, request[_SPAN].hex())

    def resolve_row(self, row: tuple) -> tuple[str, tuple | None]:
        """(outcome, request span row) for an evaluation on this row's span.

        flag_events.find_request's walk, over the rows; the index of the
        batch's spans by id is built only when a walk needs it.
        """
        service, trace_id = row[_SERVICE], row[_TRACE]
        for _ in range(flag_events.MAX_DEPTH):
            if row[_SERVICE] != service:
                return flag_events.NO_REQUEST, None
            if row[_KIND] in _REQUEST_KINDS:
                return flag_events.FOUND, row
            if not row[_PARENT]:
                return flag_events.NO_REQUEST, None
            if self.by_id is None:
                # Ids as the rows hold them (bytes, from the decoder and from psycopg).
                self.by_id = {(r[_TRACE], r[_SPAN]): r for r in self.rows}
            row = self.by_id.get((trace_id, row[_PARENT]))
            if row is None:
                return flag_events.MISSING, None
        return flag_events.NO_REQUEST, None


class _TraceIndex:
    """The stored spans of some traces: their parent links, and each one as a request."""

    def __init__(self):
        self.nodes: dict[bytes, dict[bytes, SpanNode]] = defaultdict(dict)
        self.sources: dict[tuple[bytes, bytes], object] = {}

    @classmethod
    def of_linked(cls, linked: list[spans.LinkedSpan]) -> "_TraceIndex":
        index = cls()
        for span in linked:
            index.nodes[span.trace_id][span.span_id] = SpanNode(
                span.parent_span_id, span.service, span.is_request
            )
            index.sources[(span.trace_id, span.span_id)] = span
        return index

    def resolve(self, trace_id: bytes, span_id: bytes, service: str):
        """(outcome, request span) for an evaluating span."""
        outcome, request_id = flag_events.find_request(span_id, service, self.nodes[trace_id])
        return outcome, self.sources.get((trace_id, request_id))


def _row_for(evaluation: Evaluation, index: _TraceIndex) -> _Row:
    if not evaluation.trace_id or not evaluation.span_id:
        # No trace context: nothing to attribute it to, ever.
        return _Row(evaluation, Attribution.NO_REQUEST)
    outcome, request = index.resolve(evaluation.trace_id, evaluation.span_id, evaluation.service)
    if outcome == flag_events.FOUND:
        return _Row(evaluation, Attribution.REQUEST, request)
    # Not in this batch; the request span may come later, or be stored already.
    return _Row(evaluation)


def _values(rows: list[_Row], received_at: datetime) -> list[tuple]:
    values = []
    for row in rows:
        e, request = row.evaluation, row.request
        values.append(
            (
                e.trace_id, e.span_id, e.service, e.environment, e.at, e.flag, e.cohort,
                e.variant, e.value, e.provider, e.reason, e.context_id, e.set_id,
                e.flag_version, e.error_type, e.carrier, received_at, int(row.attribution),
                received_at if row.attribution == Attribution.PENDING else None,
                *_request_columns(request),
            )
        )  # fmt: skip
    return values


def _request_columns(request: spans.LinkedSpan | None) -> tuple:
    if request is None:
        return (None, None, "", "", None, None, "")
    return (
        request.span_id,
        request.start_time,
        request.route,
        request.version,
        request.duration_us,
        request.is_error,
        request.error_type,
    )


# Attribution of what ingest could not attribute at once.


def attribute_pending(*, now: datetime | None = None, batch_size: int = ATTRIBUTION_BATCH) -> dict:
    """Attribute due pending evaluations to their request spans; return counts by outcome.

    Several workers may run it together: each claims its rows with SKIP LOCKED.
    """
    now = now or timezone.now()
    give_up_before = now - timedelta(minutes=settings.MONOENV_ROLLUP_LATENESS_MINUTES)
    counts = {"attributed": 0, "no_request": 0, "waiting": 0, "unresolved": 0}
    with transaction.atomic():
        pending = list(
            FlagEvaluation.objects.select_for_update(skip_locked=True)
            .filter(attribution=Attribution.PENDING, attribute_after__lte=now)
            .order_by("attribute_after")[:batch_size]
        )
        if not pending:
            return counts
        index = _TraceIndex.of_linked(_spans_of(pending))
        for row in pending:
            _settle(row, index, now, give_up_before, counts)
        _save_settled(pending)
    return counts


def attribute_pending_for(seconds: float, *, batch_size: int = ATTRIBUTION_BATCH) -> dict:
    """Attribute batch after batch while full ones keep coming, for at most `seconds`.

    One batch every 30 s would cap attribution at batch_size / 30 per second.
    """
    deadline = time.monotonic() + seconds
    total = {"attributed": 0, "no_request": 0, "waiting": 0, "unresolved": 0}
    while True:
        counts = attribute_pending(batch_size=batch_size)
        for key in total:
            total[key] += counts[key]
        if sum(counts.values()) < batch_size or time.monotonic() >= deadline:
            return total


_SETTLED_FIELDS = (
    "attribution", "attribute_after", "request_span_id", "request_start", "route",
    "request_version", "request_duration_us", "request_is_error", "request_error_type",
)  # fmt: skip
_KEY_FIELDS = ("at", "trace_id", "span_id", "flag", "service")
_SETTLED_SET = ", ".join(f"{name} = settled.{name}" for name in _SETTLED_FIELDS)
_SETTLED_JOIN = " AND ".join(f"e.{name} = settled.{name}" for name in _KEY_FIELDS)
_SETTLED_ORDER = _KEY_FIELDS + _SETTLED_FIELDS
_SETTLED_COLUMNS = ", ".join(_SETTLED_ORDER)


def _save_settled(rows: list[FlagEvaluation]) -> None:
    # One COPY and one joined UPDATE: bulk_update's CASE per row grows quadratically.
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(
            "CREATE TEMP TABLE flag_evaluation_settled ON COMMIT DROP AS "
            f"SELECT {_SETTLED_COLUMNS} FROM telemetry_flagevaluation WITH NO DATA"
        )
        with raw.copy(f"COPY flag_evaluation_settled ({_SETTLED_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_plain(getattr(row, name)) for name in _SETTLED_ORDER])
        raw.execute(
            f"UPDATE telemetry_flagevaluation e SET {_SETTLED_SET} "
            f"FROM flag_evaluation_settled settled WHERE {_SETTLED_JOIN}"
        )
        raw.execute("DROP TABLE flag_evaluation_settled")


def _plain(value):
    # Binary fields come back from the database as memoryview.
    return bytes(value) if isinstance(value, memoryview) else value


def _spans_of(pending: list[FlagEvaluation]) -> list[spans.LinkedSpan]:
    times = [row.at for row in pending]
    return spans.linked_spans([bytes(row.trace_id) for row in pending], min(times), max(times))


def _settle(row: FlagEvaluation, index, now: datetime, give_up_before: datetime, counts) -> None:
    outcome, request = index.resolve(bytes(row.trace_id), bytes(row.span_id), row.service)
    if outcome == flag_events.FOUND:
        row.attribution = Attribution.REQUEST
        row.attribute_after = None
        (
            row.request_span_id, row.request_start, row.route, row.request_version,
            row.request_duration_us, row.request_is_error, row.request_error_type,
        ) = _request_columns(request)  # fmt: skip
        counts["attributed"] += 1
    elif outcome == flag_events.NO_REQUEST:
        row.attribution, row.attribute_after = Attribution.NO_REQUEST, None
        counts["no_request"] += 1
    elif row.received_at < give_up_before:
        row.attribution, row.attribute_after = Attribution.UNRESOLVED, None
        counts["unresolved"] += 1
    else:
        row.attribute_after = now + RETRY_AFTER
        counts["waiting"] += 1


def prune_evaluations(before: datetime) -> int:
    """Drop evaluations older than the span retention; they are judged on their spans."""
    deleted, _ = FlagEvaluation.objects.filter(at__lt=before).delete()
    batches, _ = FlagEvaluationBatch.objects.filter(last_at__lt=before).delete()
    return deleted + batches


# The read interface for the apps above telemetry (flags).

# Every stored evaluation, with the columns of telemetry_flagevaluation, from
# both forms; the batch rows are picked by their bounds before being unpacked.
_ROW_COLUMNS = (
    "trace_id, span_id, service, environment, at, flag, cohort, variant, value, provider, "
    "reason, context_id, set_id, flag_version, error_type, carrier, attribution, "
    "request_span_id, request_start, route, request_version, request_duration_us, "
    "request_is_error, request_error_type"
)
# Exact: the bigint becomes a float8 factor, exact below 2**53 µs (the year 2255).
_AT_SQL = "timestamptz 'epoch' + (r->>2)::bigint * interval '1 microsecond'"
_UNPACKED_COLUMNS = (
    "decode(r->>0, 'hex'), decode(r->>1, 'hex'), b.service, b.environment, "
    f"{_AT_SQL}, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, r->>9, r->>10, r->>11, "
    "r->>12, 'span_event', (r->>13)::smallint, decode(r->>14, 'hex'), (r->>15)::timestamptz, "
    "r->>16, r->>17, (r->>18)::bigint, (r->>19)::boolean, r->>20"
)


def _evaluations_sql(
    start: datetime, end: datetime, *, flag: str | None = None, services: tuple[str, ...] = ()
):
    """(SQL, params): the evaluations at [start, end), of one flag or all, as one relation.

    The flag and services are filtered before batch rows are unpacked: that
    JSON is parsed on every read (as jsonb: once per row, then indexed).
    """
    row_where, batch_where, unpacked_where, extra, flag_params = "", "", "", [], []
    if flag:
        row_where, batch_where, extra = " AND flag = %s", " AND %s = ANY(b.flags)", [flag]
        # A batch row holding this flag holds the other flags of its spans too.
        unpacked_where, flag_params = " AND flag = %s", [flag]
    if services:
        row_where += " AND service = ANY(%s)"
        batch_where += " AND b.service = ANY(%s)"
        extra.append(list(services))
    sql = (
        f"SELECT {_ROW_COLUMNS} FROM telemetry_flagevaluation "
        f"WHERE at >= %s AND at < %s{row_where} "
        f"UNION ALL SELECT * FROM (SELECT {_UNPACKED_COLUMNS} "
        "FROM telemetry_flagevaluationbatch b, jsonb_array_elements(b.evaluations::jsonb) r "
        f"WHERE b.last_at >= %s AND b.first_at < %s{batch_where}) unpacked ({_ROW_COLUMNS}) "
        f"WHERE at >= %s AND at < %s{unpacked_where}"
    )
    return sql, [start, end, *extra, start, end, *extra, start, end, *flag_params]


# An evaluating span counts once per flag; evaluations without trace context each once.
_UNITS_SQL = (
    "count(DISTINCT (trace_id, span_id)) FILTER (WHERE trace_id <> ''::bytea) "
    "+ count(*) FILTER (WHERE trace_id = ''::bytea)"
)


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass(frozen=True)
class StoredEvaluation:
    """One stored evaluation, whichever form holds it (for trace pages and tests)."""

    trace_id: bytes
    span_id: bytes
    service: str
    environment: str
    at: datetime
    flag: str
    cohort: str
    variant: str
    value: str
    provider: str
    reason: str
    context_id: str
    set_id: str
    flag_version: str
    error_type: str
    carrier: str
    attribution: int
    request_span_id: bytes | None
    request_start: datetime | None
    route: str
    request_version: str
    request_duration_us: int | None
    request_is_error: bool | None
    request_error_type: str


def evaluations_in(
    start: datetime, end: datetime, *, flag: str | None = None, trace_id: bytes | None = None
) -> list[StoredEvaluation]:
    """The evaluations at [start, end), of one flag or trace if named, by time."""
    source, params = _evaluations_sql(start, end, flag=flag)
    trace_sql = " WHERE trace_id = %s" if trace_id is not None else ""
    rows = _fetch(
        f"SELECT * FROM ({source}) e{trace_sql} ORDER BY at, flag, trace_id, span_id",
        [*params, *([trace_id] if trace_id is not None else [])],
    )
    return [
        StoredEvaluation(bytes(row[0]), bytes(row[1]), *row[2:17],
                         bytes(row[17]) if row[17] is not None else None, *row[18:])  # fmt: skip
        for row in rows
    ]


@dataclass(frozen=True)
class FlagSeen:
    flag: str
    services: tuple[str, ...]
    cohorts: dict[str, int]  # evaluations per cohort
    last_at: datetime


def flags_seen(start: datetime, end: datetime) -> list[FlagSeen]:
    """Every flag evaluated in [start, end), with its services and cohort counts."""
    source, params = _evaluations_sql(start, end)
    rows = _fetch(
        f"SELECT flag, service, cohort, {_UNITS_SQL}, max(at) FROM ({source}) e "
        "GROUP BY 1, 2, 3 ORDER BY 1",
        params,
    )
    services, cohorts, last = defaultdict(set), defaultdict(lambda: defaultdict(int)), {}
    for flag, service, cohort, count, last_at in rows:
        services[flag].add(service)
        cohorts[flag][cohort] += count
        last[flag] = max(last.get(flag, last_at), last_at)
    return [
        FlagSeen(flag, tuple(sorted(services[flag])), dict(cohorts[flag]), last[flag])
        for flag in sorted(services)
    ]


def cohort_counts(
    flag: str, start: datetime, end: datetime, *, services: tuple[str, ...] = ()
) -> dict[str, int]:
    """Evaluations of the flag per cohort in [start, end), of these services (all if empty)."""
    source, params = _evaluations_sql(start, end, flag=flag, services=services)
    return dict(_fetch(f"SELECT cohort, {_UNITS_SQL} FROM ({source}) e GROUP BY 1", params))


def cohort_minute_counts(
    flag: str, start: datetime, end: datetime, *, services: tuple[str, ...] = ()
) -> dict[datetime, dict[str, int]]:
    """Evaluations per minute and cohort: the flag's shares over time."""
    source, params = _evaluations_sql(start, end, flag=flag, services=services)
    rows = _fetch(
        f"SELECT date_trunc('minute', at), cohort, {_UNITS_SQL} FROM ({source}) e GROUP BY 1, 2",
        params,
    )
    by_minute: dict[datetime, dict[str, int]] = defaultdict(dict)
    for minute, cohort, count in rows:
        by_minute[minute][cohort] = count
    return dict(by_minute)


def default_cohorts(flag: str, start: datetime, end: datetime) -> dict[str, int]:
    """Cohorts the provider served for the reason `default`, with their counts."""
    source, params = _evaluations_sql(start, end, flag=flag)
    return dict(
        _fetch(
            f"SELECT cohort, {_UNITS_SQL} FROM ({source}) e "
            "WHERE reason = 'default' AND error_type = '' GROUP BY 1",
            params,
        )
    )


def flag_evaluated(flag: str, *, since: datetime) -> bool:
    """Whether the flag has an evaluation stored since `since`."""
    if FlagEvaluation.objects.filter(flag=flag, at__gte=since).exists():
        return True
    return FlagEvaluationBatch.objects.filter(flags__contains=[flag], last_at__gte=since).exists()


def services_of_flag(flag: str, start: datetime, end: datetime) -> list[str]:
    """The services that evaluated the flag in [start, end), by name."""
    source, params = _evaluations_sql(start, end, flag=flag)
    rows = _fetch(f"SELECT DISTINCT service FROM ({source}) e ORDER BY 1", params)
    return [service for (service,) in rows]


def environment_of_flag(flag: str, start: datetime, end: datetime) -> str:
    """The environment the flag's evaluations name in [start, end), '' if none does."""
    source, params = _evaluations_sql(start, end, flag=flag)
    rows = _fetch(
        f"SELECT environment FROM ({source}) e WHERE environment <> '' "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
        params,
    )
    return rows[0][0] if rows else ""


@dataclass(frozen=True)
class CohortFilter:
    """The attributed requests of one service that evaluated a flag, over [start, end).

    The counterpart of telemetry.spans.RequestFilter for a flag's cohorts; a
    request counts once however often it evaluated the flag.
    """

    flag: str
    service: str
    start: datetime
    end: datetime
    cohort: str | None = None  # None: every cohort
    exclude_cohort: str | None = None
    environment: str | None = None  # None: any; else that environment or none named
    routes: tuple[str, ...] = ()

    def requests_sql(self) -> tuple[str, list]:
        source, params = _evaluations_sql(
            self.start, self.end, flag=self.flag, services=(self.service,)
        )
        sql = (
            "SELECT DISTINCT ON (trace_id, request_span_id) route, request_is_error, "
            "request_duration_us, request_error_type, request_start, request_span_id "
            f"FROM ({source}) e WHERE attribution = %s"
        )
        params.append(int(Attribution.REQUEST))
        for clause, value in (
            (" AND cohort = %s", self.cohort),
            (" AND cohort <> %s", self.exclude_cohort),
        ):
            if value is not None:
                sql += clause
                params.append(value)
        if self.environment is not None:
            sql += " AND environment = ANY(%s)"
            params.append([self.environment, ""])
        if self.routes:
            sql += " AND route = ANY(%s)"
            params.append(list(self.routes))
        return sql, params


def cohort_route_counts(cohort: CohortFilter) -> dict[str, tuple[int, int]]:
    """Requests and errors per route."""
    sql, params = cohort.requests_sql()
    rows = _fetch(
        f"SELECT route, count(*), count(*) FILTER (WHERE request_is_error) FROM ({sql}) r "
        "GROUP BY 1",
        params,
    )
    return {route: (requests, errors) for route, requests, errors in rows}


def cohort_error_type_counts(cohort: CohortFilter) -> dict[tuple[str, str], int]:
    """Errors per (route, error type); errors with no type are left out."""
    sql, params = cohort.requests_sql()
    rows = _fetch(
        f"SELECT route, request_error_type, count(*) FROM ({sql}) r "
        "WHERE request_is_error AND request_error_type <> '' GROUP BY 1, 2",
        params,
    )
    return {(route, kind): count for route, kind, count in rows}


def cohort_latency_samples_ms(cohort: CohortFilter, *, max_samples: int) -> dict[str, list[float]]:
    """Durations per route, all of them or a repeatable sample of about max_samples."""
    sql, params = cohort.requests_sql()
    rows = _fetch(
        f"SELECT route, request_duration_us FROM ({sql}) r "
        # Span ids are random: ordering by them is a uniform, repeatable sample.
        "ORDER BY request_span_id LIMIT %s",
        [*params, max_samples],
    )
    by_route: dict[str, list[float]] = defaultdict(list)
    for route, duration_us in rows:
        by_route[route].append(duration_us / 1000.0)
    return dict(by_route)


def cohort_request_minute_counts(cohort: CohortFilter) -> dict[datetime, tuple[int, int]]:
    """Requests and errors per minute of the request's start (floored in UTC)."""
    sql, params = cohort.requests_sql()
    rows = _fetch(
        f"SELECT date_trunc('minute', request_start), count(*), "
        f"count(*) FILTER (WHERE request_is_error) FROM ({sql}) r GROUP BY 1",
        params,
    )
    return {minute: (requests, errors) for minute, requests, errors in rows}


def _route_clause(route: str) -> tuple[str, list]:
    """An SLO's route rule (telemetry.spans.SpanSelection) on the evaluations' request route."""
    if route.endswith("*"):
        return " AND starts_with(route, %s)", [route[:-1]]
    if route:
        return " AND route = %s", [route]
    return "", []


def cohort_bad_counts(
    flag: str, selection: spans.SpanSelection, good: spans.GoodRule, start: datetime,
    end: datetime,
) -> dict[str, tuple[int, int]]:  # fmt: skip
    """Requests and bad requests per cohort, as an SLO of this selection and rule counts them.

    The flag's attributed requests of the selection's service and routes that
    started in [start, end), each once per cohort, judged by the SLO's own
    GoodRule. Evaluations keep no span kind: every attributed request is a
    server or consumer span, so the selection's kind is not checked here.
    """
    condition, condition_params = good.condition()
    route_sql, route_params = _route_clause(selection.route)
    # An evaluation happens inside its request: at >= request_start, so the
    # bounds on `at` only let the indexes do the work (a day's slack past the
    # end for a request that started in the range and evaluated after it).
    source, source_params = _evaluations_sql(
        start, end + timedelta(days=1), flag=flag, services=(selection.service,)
    )
    rows = _fetch(
        f"SELECT cohort, count(*), count(*) FILTER (WHERE NOT ({condition})) FROM ("
        "SELECT DISTINCT ON (trace_id, request_span_id, cohort) cohort, "
        "request_is_error AS is_error, request_duration_us AS duration_us "
        f"FROM ({source}) e WHERE attribution = %s "
        f"AND request_start >= %s AND request_start < %s{route_sql}) r GROUP BY 1",
        [*condition_params, *source_params, int(Attribution.REQUEST), start, end, *route_params],
    )  # fmt: skip
    return {cohort: (requests, bad) for cohort, requests, bad in rows}


# Reads for the dashboard's flag and trace pages.


def cohort_latency_per_step(
    cohort: CohortFilter, *, step: timedelta, origin: datetime
) -> dict[datetime, tuple[float, float, float]]:
    """p50, p95 and p99 request durations (ms, exact) per step of the request's start."""
    sql, params = cohort.requests_sql()
    rows = _fetch(
        "SELECT date_bin(%s, request_start, %s), "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY request_duration_us) "
        f"FROM ({sql}) r GROUP BY 1",
        [step, origin, *params],
    )
    return {bucket: tuple(value / 1000.0 for value in values) for bucket, values in rows}


def cohort_example_traces(
    flag: str, service: str, cohort: str, error_type: str, start: datetime, end: datetime, *,
    limit: int,
) -> list[bytes]:  # fmt: skip
    """The newest traces whose request, in this cohort, failed with this error type."""
    source, params = _evaluations_sql(start, end, flag=flag, services=(service,))
    rows = _fetch(
        f"SELECT trace_id FROM ({source}) e WHERE cohort = %s AND attribution = %s "
        "AND request_is_error AND request_error_type = %s "
        "GROUP BY trace_id ORDER BY max(request_start) DESC LIMIT %s",
        [*params, cohort, int(Attribution.REQUEST), error_type, limit],
    )
    return [bytes(trace_id) for (trace_id,) in rows]


@dataclass(frozen=True)
class TraceEvaluation:
    """One flag evaluation of a trace, with the request it was attributed to."""

    span_id: bytes
    request_span_id: bytes | None
    service: str
    flag: str
    cohort: str
    variant: str
    value: str
    reason: str
    provider: str
    error_type: str
    carrier: str
    at: datetime


def trace_evaluations(trace_id: bytes, start: datetime, end: datetime) -> list[TraceEvaluation]:
    """The flag evaluations of one trace made in [start, end), in time order."""
    return [
        TraceEvaluation(
            e.span_id, e.request_span_id, e.service, e.flag, e.cohort, e.variant, e.value,
            e.reason, e.provider, e.error_type, e.carrier, e.at,
        )  # fmt: skip
        for e in evaluations_in(start, end, trace_id=trace_id)
    ]
