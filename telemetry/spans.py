"""The one read interface on stored spans, for every app above telemetry.

Other apps never write SQL against telemetry_span: they describe what they
want (a RequestFilter, an SLO's SpanSelection and GoodRule) and get counts,
samples, error types and trace shapes back. The rules that decide what a
number means are defined here once:

- a request is a SERVER or CONSUMER span (REQUEST_KINDS);
- a span's error type is its exception type, else the start of its status message;
- minutes are floored in UTC, as the rollups floor them.

Every query is bounded by start_time, so PostgreSQL prunes the day partitions.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Max, Min

from telemetry.models import ServiceDay, Span, SpanKind

REQUEST_KINDS: tuple[int, ...] = (SpanKind.SERVER, SpanKind.CONSUMER)
ERROR_TYPE_CHARS = 200
_ERROR_TYPE_SQL = f"COALESCE(NULLIF(exception_type, ''), left(status_message, {ERROR_TYPE_CHARS}))"
# Spans of one trace sit close in time; this margin keeps trace reads partition-pruned.
TRACE_MARGIN = timedelta(minutes=5)


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def error_type(exception_type: str, status_message: str) -> str:
    """The error type of one span, as the queries here compute it."""
    return exception_type or status_message[:ERROR_TYPE_CHARS]


@dataclass(frozen=True)
class TraceSpan:
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service: str
    duration_us: int
    is_error: bool


@dataclass(frozen=True)
class RequestFilter:
    """Request spans of one service over [start, end)."""

    service: str
    start: datetime
    end: datetime
    environment: str | None = None  # None: any; else that environment or spans with none
    version: str | None = None  # only this version
    exclude_version: str | None = None  # every version but this one
    routes: tuple[str, ...] = ()  # empty: every route

    def where(self) -> tuple[str, list]:
        sql = "service = %s AND kind = ANY(%s) AND start_time >= %s AND start_time < %s"
        params: list = [self.service, list(REQUEST_KINDS), self.start, self.end]
        if self.environment is not None:
            sql += " AND environment = ANY(%s)"
            params.append([self.environment, ""])
        if self.version is not None:
            sql += " AND service_version = %s"
            params.append(self.version)
        if self.exclude_version is not None:
            sql += " AND service_version <> %s"
            params.append(self.exclude_version)
        if self.routes:
            sql += " AND http_route = ANY(%s)"
            params.append(list(self.routes))
        return sql, params


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def route_counts(span_filter: RequestFilter) -> dict[str, tuple[int, int]]:
    """Requests and errors per route."""
    where, params = span_filter.where()
    rows = _fetch(
        f"SELECT http_route, count(*), count(*) FILTER (WHERE is_error) "
        f"FROM telemetry_span WHERE {where} GROUP BY 1",
        params,
    )
    return {route: (requests, errors) for route, requests, errors in rows}


def error_type_counts(span_filter: RequestFilter) -> dict[tuple[str, str], int]:
    """Errors per (route, error type); errors with no type at all are left out."""
    where, params = span_filter.where()
    rows = _fetch(
        f"SELECT http_route, {_ERROR_TYPE_SQL}, count(*) FROM telemetry_span "
        f"WHERE {where} AND is_error GROUP BY 1, 2",
        params,
    )
    return {(route, kind): count for route, kind, count in rows if kind}


def latency_samples_ms(span_filter: RequestFilter, *, max_samples: int) -> dict[str, list[float]]:
    """Durations per route, all of them or a repeatable sample of about max_samples."""
    where, params = span_filter.where()
    total = sum(requests for requests, _ in route_counts(span_filter).values())
    sample_sql = ""
    if total > max_samples:
        # Span ids are random: their first byte picks a uniform, repeatable sample.
        cutoff = max(1, int(256 * max_samples / total))
        sample_sql = " AND get_byte(span_id, 0) < %s"
        params = [*params, cutoff]
    by_route: dict[str, list[float]] = defaultdict(list)
    for route, duration_us in _fetch(
        f"SELECT http_route, duration_us FROM telemetry_span WHERE {where}{sample_sql}", params
    ):
        by_route[route].append(duration_us / 1000.0)
    return dict(by_route)


def presence(span_filter: RequestFilter) -> tuple[int, datetime | None]:
    """How many requests match, and when the last one started."""
    where, params = span_filter.where()
    count, last = _fetch(
        f"SELECT count(*), max(start_time) FROM telemetry_span WHERE {where}", params
    )[0]
    return count, last


def minute_counts(span_filter: RequestFilter) -> dict[datetime, tuple[int, int]]:
    """Requests and errors per minute (floored in UTC)."""
    where, params = span_filter.where()
    rows = _fetch(
        f"SELECT date_trunc('minute', start_time), count(*), count(*) FILTER (WHERE is_error) "
        f"FROM telemetry_span WHERE {where} GROUP BY 1",
        params,
    )
    return {minute: (requests, errors) for minute, requests, errors in rows}


def environment_of(service: str, version: str, start: datetime, end: datetime) -> str:
    """The environment the version's spans name in [start, end), '' if none does."""
    rows = _fetch(
        "SELECT environment FROM telemetry_span WHERE service = %s AND service_version = %s "
        "AND start_time >= %s AND start_time < %s AND environment <> '' LIMIT 1",
        [service, version, start, end],
    )
    return rows[0][0] if rows else ""


def served_minutes(service: str, version: str, since: datetime) -> list[datetime]:
    """Every minute since `since` in which the version had a span, in order."""
    rows = _fetch(
        "SELECT DISTINCT date_trunc('minute', start_time) FROM telemetry_span "
        "WHERE service = %s AND service_version = %s AND start_time >= %s ORDER BY 1",
        [service, version, since],
    )
    return [minute for (minute,) in rows]


def first_start_after(service: str, version: str, since: datetime) -> datetime | None:
    rows = _fetch(
        "SELECT min(start_time) FROM telemetry_span WHERE service = %s "
        "AND service_version = %s AND start_time >= %s",
        [service, version, since],
    )
    return rows[0][0]


_TRACE_SPAN_COLUMNS = "trace_id, span_id, parent_span_id, service, duration_us, is_error"


def _trace_span(row) -> TraceSpan:
    trace_id, span_id, parent_span_id, service, duration_us, is_error = row
    return TraceSpan(
        bytes(trace_id),
        bytes(span_id),
        bytes(parent_span_id) if parent_span_id else None,
        service,
        duration_us,
        is_error,
    )


def sample_requests(
    service: str, start: datetime, end: datetime, *, route: str = "", limit: int
) -> list[TraceSpan]:
    """Up to `limit` requests (server or consumer spans) of the service, of one route if given."""
    route_sql = " AND http_route = %s" if route else ""
    params = [service, list(REQUEST_KINDS), start, end, *([route] if route else []), limit]
    # Trace ids are random, so the lowest ones are a uniform sample.
    rows = _fetch(
        f"SELECT {_TRACE_SPAN_COLUMNS} FROM telemetry_span WHERE service = %s "
        f"AND kind = ANY(%s) AND start_time >= %s AND start_time < %s{route_sql} "
        "ORDER BY trace_id LIMIT %s",
        params,
    )
    return [_trace_span(row) for row in rows]


def trace_spans(trace_ids: list[bytes], start: datetime, end: datetime) -> list[TraceSpan]:
    """Every span of these traces that started within TRACE_MARGIN of [start, end)."""
    if not trace_ids:
        return []
    rows = _fetch(
        f"SELECT {_TRACE_SPAN_COLUMNS} FROM telemetry_span WHERE trace_id = ANY(%s) "
        "AND start_time >= %s AND start_time < %s",
        [list(set(trace_ids)), start - TRACE_MARGIN, end + TRACE_MARGIN],
    )
    return [_trace_span(row) for row in rows]


# What an SLO counts.


@dataclass(frozen=True)
class SpanSelection:
    service: str
    kind: int
    route: str = ""  # '' every route; an exact route; or a prefix ending in '*'

    def where(self) -> tuple[str, list]:
        clauses, params = ["service = %s", "kind = %s"], [self.service, self.kind]
        if self.route.endswith("*"):
            clauses.append("starts_with(http_route, %s)")
            params.append(self.route[:-1])
        elif self.route:
            clauses.append("http_route = %s")
            params.append(self.route)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class GoodRule:
    max_duration_us: int | None = None  # None: availability, good = not an error
    require_success: bool = False

    def condition(self) -> tuple[str, list]:
        if self.max_duration_us is None:
            return "NOT is_error", []
        if self.require_success:
            return "duration_us <= %s AND NOT is_error", [self.max_duration_us]
        return "duration_us <= %s", [self.max_duration_us]


def good_total_per_minute(
    selection: SpanSelection,
    good: GoodRule,
    *,
    minutes: list[datetime] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[tuple[datetime, int, int]]:
    """Good and total spans per minute, for the given minutes or over [start, end)."""
    where, params = selection.where()
    condition, condition_params = good.condition()
    if minutes is not None:
        source = (
            "unnest(%s::timestamptz[]) AS wanted(minute) JOIN telemetry_span "
            "ON start_time >= wanted.minute AND start_time < wanted.minute + interval '1 minute'"
        )
        source_params, range_sql, range_params = [minutes], "", []
    else:
        source, source_params = "telemetry_span", []
        range_sql, range_params = " AND start_time >= %s AND start_time < %s", [start, end]
    return _fetch(
        f"SELECT date_trunc('minute', start_time), count(*) FILTER (WHERE {condition}), count(*) "
        f"FROM {source} WHERE {where}{range_sql} GROUP BY 1 ORDER BY 1",
        [*condition_params, *source_params, *params, *range_params],
    )


def bad_count(
    selection: SpanSelection,
    good: GoodRule,
    *,
    start: datetime,
    end: datetime,
    version: str | None = None,
) -> int:
    """Spans of the selection in [start, end) that the rule counts as bad."""
    where, params = selection.where()
    condition, condition_params = good.condition()
    version_sql = " AND service_version = %s" if version is not None else ""
    rows = _fetch(
        f"SELECT count(*) FILTER (WHERE NOT ({condition})) FROM telemetry_span "
        f"WHERE {where} AND start_time >= %s AND start_time < %s{version_sql}",
        [*condition_params, *params, start, end, *([version] if version is not None else [])],
    )
    return rows[0][0]


# Traces, for the dashboard.


@dataclass(frozen=True)
class TraceSearch:
    start: datetime
    end: datetime
    service: str = ""
    route: str = ""
    version: str = ""
    errors: str = ""  # "", "only" or "none"
    min_duration_ms: float | None = None

    def where(self) -> tuple[str, list]:
        conditions, params = ["start_time >= %s", "start_time < %s"], [self.start, self.end]
        for column, value in (("service", self.service), ("service_version", self.version)):
            if value:
                conditions.append(f"{column} = %s")
                params.append(value)
        if self.route:
            conditions.append("(http_route = %s OR name = %s)")
            params += [self.route, self.route]
        if self.errors == "only":
            conditions.append("is_error")
        elif self.errors == "none":
            conditions.append("NOT is_error")
        if self.min_duration_ms is not None:
            conditions.append("duration_us >= %s")
            params.append(int(self.min_duration_ms * 1000))
        return " AND ".join(conditions), params


def search_trace_rows(search: TraceSearch, *, limit: int, offset: int = 0) -> list[tuple]:
    """The newest matching spans: (trace_id, start_time, service, name, route,
    duration_us, is_error, http_status), newest first."""
    where, params = search.where()
    return _fetch(
        "SELECT trace_id, start_time, service, name, http_route, duration_us, is_error, "
        f"http_status FROM telemetry_span WHERE {where} "
        "ORDER BY start_time DESC, trace_id LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )


def trace_summaries(trace_ids: list[bytes], start: datetime, end: datetime) -> dict[bytes, dict]:
    """Span count, service count, any error and duration of each trace."""
    if not trace_ids:
        return {}
    margin = timedelta(hours=1)
    rows = _fetch(
        """
        SELECT trace_id, count(*), count(DISTINCT service), bool_or(is_error), min(start_time),
               max(start_time + duration_us * interval '1 microsecond')
        FROM telemetry_span WHERE trace_id = ANY(%s) AND start_time >= %s AND start_time < %s
        GROUP BY trace_id
        """,
        [trace_ids, start - margin, end + margin],
    )
    return {
        bytes(trace_id): {
            "span_count": count,
            "service_count": services,
            "trace_error": has_error,
            "trace_duration_ms": round((last - first).total_seconds() * 1000, 3),
        }
        for trace_id, count, services, has_error, first, last in rows
    }


def trace(trace_id: bytes) -> list[Span]:
    """Every stored span of one trace, by start time."""
    return list(Span.objects.filter(trace_id=trace_id).order_by("start_time"))


def example_trace_ids(
    service: str, version: str, error_type_name: str, *, since: datetime, limit: int
) -> list[bytes]:
    """Recent traces in which the version failed with this error type, newest first."""
    rows = _fetch(
        f"""
        SELECT trace_id FROM (
            SELECT DISTINCT ON (trace_id) trace_id, start_time FROM telemetry_span
            WHERE service = %s AND service_version = %s AND is_error AND start_time >= %s
              AND {_ERROR_TYPE_SQL} = %s
            ORDER BY trace_id, start_time DESC
        ) latest ORDER BY start_time DESC LIMIT %s
        """,
        [service, version, since, error_type_name, limit],
    )
    return [bytes(trace_id) for (trace_id,) in rows]


# Added for deployments (change events, suspects, the gate).


def minute_moments(span_filter: RequestFilter) -> dict[datetime, tuple[int, int, float, float]]:
    """Per minute: requests, errors, and the sum and sum of squares of ln(duration in ms)."""
    where, params = span_filter.where()
    log_ms = "ln(greatest(duration_us, 1) / 1000.0)"
    rows = _fetch(
        f"SELECT date_trunc('minute', start_time), count(*), count(*) FILTER (WHERE is_error), "
        f"sum({log_ms}), sum({log_ms} ^ 2) FROM telemetry_span WHERE {where} GROUP BY 1",
        params,
    )
    return {minute: (n, errors, float(s), float(sq)) for minute, n, errors, s, sq in rows}


def version_counts(span_filter: RequestFilter) -> dict[str, tuple[int, datetime]]:
    """Requests per version, with the start of each version's last request."""
    where, params = span_filter.where()
    rows = _fetch(
        f"SELECT service_version, count(*), max(start_time) FROM telemetry_span "
        f"WHERE {where} GROUP BY 1",
        params,
    )
    return {version: (requests, last) for version, requests, last in rows}


@dataclass(frozen=True)
class VersionSeen:
    service: str
    version: str
    first_seen: datetime  # its first span over all kept days
    last_seen: datetime


def versions_seen(*, since: datetime, service: str | None = None) -> list[VersionSeen]:
    """Every version with a span since `since`, by service, then first span.

    Read from the per-day summary, so it never scans the span table.
    """
    days = ServiceDay.objects.all()
    if service is not None:
        days = days.filter(service=service)
    rows = (
        days.values("service", "service_version")
        .annotate(first=Min("first_seen"), last=Max("last_seen"))
        .filter(last__gte=since)
        .order_by("service", "first", "service_version")
    )
    return [
        VersionSeen(row["service"], row["service_version"], row["first"], row["last"])
        for row in rows
    ]


def known_services() -> list[str]:
    """Every service with a span in the kept days, sorted."""
    return list(ServiceDay.objects.values_list("service", flat=True).distinct().order_by("service"))


def has_spans(service: str) -> bool:
    return ServiceDay.objects.filter(service=service).exists()


# Incident impact (incidents/impact.py).


@dataclass(frozen=True)
class RequestImpact:
    requests: int
    failed: int
    slow: int
    affected_users: int  # distinct users among the failed or slow requests


def request_impact(span_filter: RequestFilter, *, slow_ms: float) -> RequestImpact:
    """Failed and slow requests, and how many distinct users they reached.

    A request is slow above slow_ms. Its user is the `user.id` attribute, else
    the older `enduser.id`; requests carrying neither count no user.
    """
    where, params = span_filter.where()
    user = "COALESCE(attributes->>'user.id', attributes->>'enduser.id')"
    hurt = "(is_error OR duration_us > %s)"
    slow_us = int(slow_ms * 1000)
    row = _fetch(
        f"SELECT count(*), count(*) FILTER (WHERE is_error), "
        f"count(*) FILTER (WHERE duration_us > %s), "
        f"count(DISTINCT {user}) FILTER (WHERE {hurt}) FROM telemetry_span WHERE {where}",
        [slow_us, slow_us, *params],
    )[0]
    return RequestImpact(*(int(value) for value in row))


# Flag attribution (telemetry/flag_store.py).


@dataclass(frozen=True)
class LinkedSpan:
    """A span with its parent link, and the outcome it would give as a request."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service: str
    is_request: bool
    start_time: datetime
    route: str
    version: str
    duration_us: int
    is_error: bool
    error_type: str


def linked_spans(trace_ids: list[bytes], start: datetime, end: datetime) -> list[LinkedSpan]:
    """Every span of these traces that started within TRACE_MARGIN of [start, end)."""
    if not trace_ids:
        return []
    rows = _fetch(
        "SELECT trace_id, span_id, parent_span_id, service, kind = ANY(%s), start_time, "
        f"http_route, service_version, duration_us, is_error, {_ERROR_TYPE_SQL} "
        "FROM telemetry_span WHERE trace_id = ANY(%s) AND start_time >= %s AND start_time < %s",
        [list(REQUEST_KINDS), list(set(trace_ids)), start - TRACE_MARGIN, end + TRACE_MARGIN],
    )
    return [
        LinkedSpan(bytes(row[0]), bytes(row[1]), bytes(row[2]) if row[2] else None, *row[3:])
        for row in rows
    ]
