"""Stored flag evaluations: writing them, attributing them to requests, reading cohorts.

Owner of telemetry_flagevaluation. The invariants:
- each evaluation is stored once, however often its export is retried
  (a unique key on service, trace, span, flag and time);
- attribution works whichever arrives first: an evaluation whose evaluating
  span is a request span of the same ingest batch is attributed at once;
  every other one is attributed by attribute_pending(), which retries while
  the spans it needs may still come (MONOENV_ROLLUP_LATENESS_MINUTES), then
  gives up and marks it unresolved;
- a cohort's requests are counted once each, however many times a request
  evaluated the flag (cohort reads take DISTINCT request spans).

Apps above telemetry read evaluations only through the named functions at
the end of this module.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from telemetry import flag_events, otlp, spans
from telemetry.flag_events import Evaluation, SpanNode
from telemetry.models import Attribution, FlagEvaluation

ATTRIBUTION_BATCH = 5000
RETRY_AFTER = timedelta(seconds=30)

_COLUMNS = (
    "trace_id", "span_id", "service", "environment", "at", "flag", "cohort", "variant", "value",
    "provider", "reason", "context_id", "set_id", "flag_version", "error_type", "carrier",
    "received_at", "attribution", "attribute_after", "request_span_id", "request_start", "route",
    "request_version", "request_duration_us", "request_is_error", "request_error_type",
)  # fmt: skip
_COLUMN_LIST = ", ".join(_COLUMNS)


@dataclass(frozen=True)
class _Row:
    evaluation: Evaluation
    attribution: int = Attribution.PENDING
    request: spans.LinkedSpan | None = None


def store_evaluations(
    evaluations: list[Evaluation], *, received_at: datetime | None = None
) -> int:
    """Store evaluations once each, to be attributed by attribute_pending(); return the new.

    Call it inside the transaction that stores what carried them, so a retried
    batch neither loses nor doubles them.
    """
    return _store(evaluations, _TraceIndex(), received_at or timezone.now())


def store_from_span_rows(rows: list[tuple]) -> int:
    """The ingest hook: the evaluations carried by freshly stored span rows.

    Those whose request span is in the same rows are attributed at once.
    """
    evaluations = _unique(flag_events.from_span_rows(rows))
    if not evaluations:
        return 0
    traces = {evaluation.trace_id for evaluation in evaluations}
    index = _TraceIndex.of_rows(rows, traces)
    values = _values([_row_for(evaluation, index) for evaluation in evaluations], timezone.now())
    # The rows are spans stored for the first time (ingest skips a retried
    # batch's), and duplicates within them are gone: none can be stored yet,
    # so no savepoint is needed, which spares two round trips per batch.
    with connection.cursor() as cursor:
        _copy(cursor.cursor, "telemetry_flagevaluation", values)
    return len(values)


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
    with raw_cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


_ROW_INDEX = {name: index for index, name in enumerate(otlp.SPAN_COLUMNS)}
_TRACE, _SPAN, _PARENT, _SERVICE, _KIND = (
    _ROW_INDEX[name] for name in ("trace_id", "span_id", "parent_span_id", "service", "kind")
)


class _TraceIndex:
    """The spans known of some traces: their parent links, and each one as a request.

    Built from ingest's span rows, it makes a LinkedSpan only for the spans
    found to be requests: most spans of a batch are never one.
    """

    def __init__(self):
        self.nodes: dict[bytes, dict[bytes, SpanNode]] = defaultdict(dict)
        self.sources: dict[tuple[bytes, bytes], object] = {}

    @classmethod
    def of_rows(cls, rows: list[tuple], traces: set[bytes]) -> "_TraceIndex":
        index = cls()
        for row in rows:
            trace_id = bytes(row[_TRACE])
            if trace_id in traces:
                span_id, parent = bytes(row[_SPAN]), row[_PARENT]
                index.nodes[trace_id][span_id] = SpanNode(
                    bytes(parent) if parent else None, row[_SERVICE],
                    row[_KIND] in spans.REQUEST_KINDS,
                )  # fmt: skip
                index.sources[(trace_id, span_id)] = row
        return index

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
        source = self.sources.get((trace_id, request_id))
        if isinstance(source, tuple):  # an ingest row
            source = _linked(source)
        return outcome, source


def _linked(row: tuple) -> spans.LinkedSpan:
    def column(name):
        return row[_ROW_INDEX[name]]

    return spans.LinkedSpan(
        trace_id=bytes(column("trace_id")),
        span_id=bytes(column("span_id")),
        parent_span_id=bytes(column("parent_span_id")) if column("parent_span_id") else None,
        service=column("service"),
        is_request=column("kind") in spans.REQUEST_KINDS,
        start_time=column("start_time"),
        route=column("http_route"),
        version=column("service_version"),
        duration_us=column("duration_us"),
        is_error=column("is_error"),
        error_type=spans.error_type(column("exception_type"), column("status_message")),
    )


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
    return deleted


# The read interface for the apps above telemetry (flags).

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
class FlagSeen:
    flag: str
    services: tuple[str, ...]
    cohorts: dict[str, int]  # evaluations per cohort
    last_at: datetime


def flags_seen(start: datetime, end: datetime) -> list[FlagSeen]:
    """Every flag evaluated in [start, end), with its services and cohort counts."""
    rows = _fetch(
        f"SELECT flag, service, cohort, {_UNITS_SQL}, max(at) FROM telemetry_flagevaluation "
        "WHERE at >= %s AND at < %s GROUP BY 1, 2, 3 ORDER BY 1",
        [start, end],
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
    service_sql, params = _services_clause(services)
    rows = _fetch(
        f"SELECT cohort, {_UNITS_SQL} FROM telemetry_flagevaluation "
        f"WHERE flag = %s AND at >= %s AND at < %s{service_sql} GROUP BY 1",
        [flag, start, end, *params],
    )
    return dict(rows)


def cohort_minute_counts(
    flag: str, start: datetime, end: datetime, *, services: tuple[str, ...] = ()
) -> dict[datetime, dict[str, int]]:
    """Evaluations per minute and cohort: the flag's shares over time."""
    service_sql, params = _services_clause(services)
    rows = _fetch(
        f"SELECT date_trunc('minute', at), cohort, {_UNITS_SQL} FROM telemetry_flagevaluation "
        f"WHERE flag = %s AND at >= %s AND at < %s{service_sql} GROUP BY 1, 2",
        [flag, start, end, *params],
    )
    by_minute: dict[datetime, dict[str, int]] = defaultdict(dict)
    for minute, cohort, count in rows:
        by_minute[minute][cohort] = count
    return dict(by_minute)


def default_cohorts(flag: str, start: datetime, end: datetime) -> dict[str, int]:
    """Cohorts the provider served for the reason `default`, with their counts."""
    return dict(
        _fetch(
            f"SELECT cohort, {_UNITS_SQL} FROM telemetry_flagevaluation WHERE flag = %s "
            "AND reason = 'default' AND error_type = '' AND at >= %s AND at < %s GROUP BY 1",
            [flag, start, end],
        )
    )


def flag_evaluated(flag: str, *, since: datetime) -> bool:
    """Whether the flag has an evaluation stored since `since`."""
    return FlagEvaluation.objects.filter(flag=flag, at__gte=since).exists()


def services_of_flag(flag: str, start: datetime, end: datetime) -> list[str]:
    """The services that evaluated the flag in [start, end), by name."""
    rows = _fetch(
        "SELECT DISTINCT service FROM telemetry_flagevaluation WHERE flag = %s "
        "AND at >= %s AND at < %s ORDER BY 1",
        [flag, start, end],
    )
    return [service for (service,) in rows]


def environment_of_flag(flag: str, start: datetime, end: datetime) -> str:
    """The environment the flag's evaluations name in [start, end), '' if none does."""
    rows = _fetch(
        "SELECT environment FROM telemetry_flagevaluation WHERE flag = %s AND at >= %s "
        "AND at < %s AND environment <> '' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
        [flag, start, end],
    )
    return rows[0][0] if rows else ""


def _services_clause(services: tuple[str, ...]) -> tuple[str, list]:
    return (" AND service = ANY(%s)", [list(services)]) if services else ("", [])


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
        sql = (
            "SELECT DISTINCT ON (trace_id, request_span_id) route, request_is_error, "
            "request_duration_us, request_error_type, request_start, request_span_id "
            "FROM telemetry_flagevaluation WHERE flag = %s AND service = %s "
            "AND attribution = %s AND at >= %s AND at < %s"
        )
        params: list = [self.flag, self.service, int(Attribution.REQUEST), self.start, self.end]
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
    rows = _fetch(
        f"SELECT cohort, count(*), count(*) FILTER (WHERE NOT ({condition})) FROM ("
        "SELECT DISTINCT ON (trace_id, request_span_id, cohort) cohort, "
        "request_is_error AS is_error, request_duration_us AS duration_us "
        "FROM telemetry_flagevaluation WHERE flag = %s AND service = %s AND attribution = %s "
        # An evaluation happens inside its request: at >= request_start, so the
        # bound on `at` only lets the (flag, at) index do the work.
        f"AND at >= %s AND request_start >= %s AND request_start < %s{route_sql}) r GROUP BY 1",
        [*condition_params, flag, selection.service, int(Attribution.REQUEST), start, start, end,
         *route_params],
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
    rows = _fetch(
        "SELECT trace_id FROM telemetry_flagevaluation WHERE flag = %s AND service = %s "
        "AND cohort = %s AND attribution = %s AND at >= %s AND at < %s AND request_is_error "
        "AND request_error_type = %s GROUP BY trace_id ORDER BY max(request_start) DESC LIMIT %s",
        [flag, service, cohort, int(Attribution.REQUEST), start, end, error_type, limit],
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
    rows = (
        FlagEvaluation.objects.filter(trace_id=trace_id, at__gte=start, at__lt=end)
        .order_by("at", "flag")
        .values_list(
            "span_id", "request_span_id", "service", "flag", "cohort", "variant", "value",
            "reason", "provider", "error_type", "carrier", "at",
        )  # fmt: skip
    )
    return [
        TraceEvaluation(bytes(span_id), bytes(request) if request else None, *rest)
        for span_id, request, *rest in rows
    ]
