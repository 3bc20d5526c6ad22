"""The dashboard's reads of the telemetry store: series, tables and traces.

Every function returns plain dicts and lists, ready for a template or a JSON
response, so views only parse input and shape output.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Max, Min

from dashboard import rollups
from telemetry import histogram
from telemetry.models import ServiceDay, Span, SpanKind
from telemetry.otlp import hex_id

# Spans that are a request into the service: what "requests" means on every page.
REQUEST_KINDS = [SpanKind.SERVER, SpanKind.CONSUMER]
QUANTILES = (0.5, 0.95, 0.99)
OVERVIEW_WINDOW = timedelta(hours=1)
SERVICE_LOOKBACK = timedelta(days=30)
TRACE_RESULTS = 50
SERVICE_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#e45756")
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Source:
    """A rollup table at one resolution, and how to read its histograms."""

    table: str
    time_column: str
    condition: str
    histogram_columns: str
    unnest: str
    resolution: timedelta


MINUTE_ROLLUPS = Source(
    "telemetry_rollupminute",
    "minute",
    "span_kind = ANY(%(kinds)s)",
    "latency_histogram AS hist",
    "(SELECT i - 1 AS i, c FROM unnest(src.hist) WITH ORDINALITY AS d(c, i)) AS u",
    MINUTE,
)
FIVE_MINUTE_ROLLUPS = Source(
    "dashboard_coarserollup",
    "start",
    f"resolution = {rollups.FIVE_MINUTES}",
    "bucket_indexes AS idx, bucket_counts AS cnt",
    "unnest(src.idx, src.cnt) AS u(i, c)",
    timedelta(seconds=rollups.FIVE_MINUTES),
)
HOUR_ROLLUPS = Source(
    "dashboard_coarserollup",
    "start",
    f"resolution = {rollups.HOUR}",
    "bucket_indexes AS idx, bucket_counts AS cnt",
    "unnest(src.idx, src.cnt) AS u(i, c)",
    timedelta(seconds=rollups.HOUR),
)


@dataclass(frozen=True)
class TimeRange:
    name: str
    span: timedelta
    step: timedelta
    source: Source

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """A start and end aligned on the step, so polls reuse the same buckets."""
        end = _floor(now, self.step) + self.step
        return end - self.span, end


RANGES = {
    item.name: item
    for item in (
        TimeRange("1h", timedelta(hours=1), MINUTE, MINUTE_ROLLUPS),
        TimeRange("6h", timedelta(hours=6), timedelta(minutes=5), FIVE_MINUTE_ROLLUPS),
        TimeRange("24h", timedelta(hours=24), timedelta(minutes=15), FIVE_MINUTE_ROLLUPS),
        TimeRange("7d", timedelta(days=7), timedelta(hours=1), HOUR_ROLLUPS),
        TimeRange("30d", timedelta(days=30), timedelta(hours=6), HOUR_ROLLUPS),
    )
}
DEFAULT_RANGE = "6h"


def _floor(moment: datetime, step: timedelta) -> datetime:
    return rollups.ORIGIN + ((moment - rollups.ORIGIN) // step) * step


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else 0.0


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 3) if whole else None


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000, 3)


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class Stats:
    """Requests, errors and a merged latency histogram for one group of rows."""

    __slots__ = ("requests", "errors", "buckets")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.buckets = histogram.empty()

    def quantile_ms(self, quantile: float) -> float | None:
        return _ms(histogram.percentile_us(self.buckets, quantile))

    def figures(self, seconds: float) -> dict:
        return {
            "requests": self.requests,
            "rate": round(_rate(self.requests, seconds), 4),
            "error_pct": _pct(self.errors, self.requests),
            "p50_ms": self.quantile_ms(0.5),
            "p95_ms": self.quantile_ms(0.95),
            "p99_ms": self.quantile_ms(0.99),
        }


# GROUPING(bucket, route, version) of each grouping set: a bit is set for each
# column the set does not group by.
_BY_BUCKET, _BY_ROUTE, _BY_VERSION, _OVERALL = 3, 5, 6, 7
_BREAKDOWN_SQL = """
    WITH src AS MATERIALIZED (
        SELECT date_bin(%(step)s, {time_column}, %(origin)s) AS bucket, route, version,
               requests, errors, {histogram_columns}
        FROM {table}
        WHERE service = %(service)s AND {time_column} >= %(start)s
          AND {time_column} < %(end)s AND {condition}
    )
    SELECT GROUPING(bucket, route, version), bucket, route, version, NULL::int,
           sum(requests)::bigint, sum(errors)::bigint
    FROM src GROUP BY GROUPING SETS ((bucket), (route), (version), ())
    UNION ALL
    SELECT GROUPING(bucket, route, version), bucket, route, version, u.i, sum(u.c)::bigint, NULL
    FROM src CROSS JOIN LATERAL {unnest}
    WHERE u.c > 0
    GROUP BY GROUPING SETS ((bucket, u.i), (route, u.i), (version, u.i), (u.i))
"""


def _breakdown(service: str, time_range: TimeRange, start: datetime, end: datetime) -> dict:
    """Stats per chart bucket, per route, per version and overall, in one scan."""
    source = time_range.source
    sql = _BREAKDOWN_SQL.format(**source.__dict__)
    params = {
        "step": time_range.step,
        "origin": rollups.ORIGIN,
        "service": service,
        "start": start,
        "end": end,
        "kinds": REQUEST_KINDS,
    }
    groups: dict[int, dict] = {_BY_BUCKET: {}, _BY_ROUTE: {}, _BY_VERSION: {}, _OVERALL: {}}
    for grouping, bucket, route, version, index, count, errors in _fetch(sql, params):
        key = {_BY_BUCKET: bucket, _BY_ROUTE: route, _BY_VERSION: version}.get(grouping)
        stats = groups[grouping].get(key)
        if stats is None:
            stats = groups[grouping][key] = Stats()
        if index is None:
            # The overall grouping set yields one row even over no rows: NULL sums.
            stats.requests, stats.errors = count or 0, errors or 0
        else:
            stats.buckets[index] += count
    return {
        "buckets": groups[_BY_BUCKET],
        "routes": groups[_BY_ROUTE],
        "versions": groups[_BY_VERSION],
        "overall": groups[_OVERALL].get(None) or Stats(),
    }


def known_services(*, now: datetime) -> list[str]:
    """Services that sent spans within the lookback, from the per-day counts."""
    since = (now - SERVICE_LOOKBACK).date()
    return list(
        ServiceDay.objects.filter(day__gte=since)
        .values_list("service", flat=True)
        .distinct()
        .order_by("service")
    )


def service_exists(service: str) -> bool:
    return ServiceDay.objects.filter(service=service).exists()


def overview_window(now: datetime) -> tuple[datetime, datetime]:
    """The last hour, in whole five-minute buckets, the current one included."""
    step = FIVE_MINUTE_ROLLUPS.resolution
    end = _floor(now, step) + step
    return end - OVERVIEW_WINDOW, end


def overview_stats(*, now: datetime) -> dict[str, dict]:
    """Per service over the last hour: rate, error %, p95 and a per-minute sparkline."""
    start, end = overview_window(now)
    seconds = max((min(now, end) - start).total_seconds(), 60.0)
    per_service: dict[str, Stats] = defaultdict(Stats)
    for service, index, count, errors in _fetch(
        """
        SELECT service, NULL::int, sum(requests)::bigint, sum(errors)::bigint
        FROM dashboard_coarserollup
        WHERE resolution = %(resolution)s AND start >= %(start)s AND start < %(end)s
        GROUP BY service
        UNION ALL
        SELECT service, u.i, sum(u.c)::bigint, NULL FROM dashboard_coarserollup
        CROSS JOIN LATERAL unnest(bucket_indexes, bucket_counts) AS u(i, c)
        WHERE resolution = %(resolution)s AND start >= %(start)s AND start < %(end)s
        GROUP BY service, u.i
        """,
        {"resolution": rollups.FIVE_MINUTES, "start": start, "end": end},
    ):
        stats = per_service[service]
        if index is None:
            # The overall grouping set yields one row even over no rows: NULL sums.
            stats.requests, stats.errors = count or 0, errors or 0
        else:
            stats.buckets[index] += count
    sparks = _sparklines(start, end)
    return {
        service: {
            "rate": round(_rate(stats.requests, seconds), 4),
            "requests": stats.requests,
            "error_pct": _pct(stats.errors, stats.requests),
            "p95_ms": stats.quantile_ms(0.95),
            "spark_start": start.isoformat(),
            "spark": sparks.get(service) or _empty_spark(),
        }
        for service, stats in per_service.items()
    }


def _empty_spark() -> list[float]:
    return [0.0] * int(OVERVIEW_WINDOW / MINUTE)


def _sparklines(start: datetime, end: datetime) -> dict[str, list[float]]:
    sparks: dict[str, list[float]] = {}
    for service, minute, requests in _fetch(
        """
        SELECT service, minute, sum(requests)::bigint FROM telemetry_rollupminute
        WHERE minute >= %s AND minute < %s AND span_kind = ANY(%s)
        GROUP BY service, minute
        """,
        [start, end, REQUEST_KINDS],
    ):
        points = sparks.setdefault(service, _empty_spark())
        points[int((minute - start) / MINUTE)] = round(requests / 60, 3)
    return sparks


def empty_overview(*, now: datetime) -> dict:
    """The overview figures of a service with no requests in the last hour."""
    return {
        "rate": 0.0,
        "requests": 0,
        "error_pct": None,
        "p95_ms": None,
        "spark_start": overview_window(now)[0].isoformat(),
        "spark": _empty_spark(),
    }


def service_breakdown(service: str, time_range: TimeRange, *, now: datetime) -> dict:
    """Series, routes, versions and totals of one service over a range."""
    start, end = time_range.bounds(now)
    parts = _breakdown(service, time_range, start, end)
    range_seconds = (min(now, end) - start).total_seconds()
    return {
        "summary": parts["overall"].figures(range_seconds),
        "series": _series(parts["buckets"], time_range, start, end),
        "routes": _routes(parts["routes"], range_seconds),
        "versions": _versions(service, parts["versions"], start, end, now=now),
    }


def _series(buckets: dict, time_range: TimeRange, start: datetime, end: datetime) -> dict:
    step_seconds = time_range.step.total_seconds()
    points = []
    bucket = start
    while bucket < end:
        figures = (buckets.get(bucket) or Stats()).figures(step_seconds)
        del figures["requests"]
        points.append({"t": bucket.isoformat(), **figures})
        bucket += time_range.step
    return {"start": start.isoformat(), "end": end.isoformat(), "points": points}


def _routes(routes: dict, seconds: float) -> list[dict]:
    rows = [{"route": route, **stats.figures(seconds)} for route, stats in routes.items()]
    return sorted(rows, key=lambda row: (-row["requests"], row["route"]))


def _versions(
    service: str, stats_by_version: dict, start: datetime, end: datetime, *, now: datetime
) -> list[dict]:
    """Versions seen in the range, newest first, with first and last seen ever."""
    seen = ServiceDay.objects.filter(service=service).values("service_version").annotate(
        first_seen=Min("first_seen"), last_seen=Max("last_seen")
    )
    rows = []
    for entry in seen.filter(last_seen__gte=start):
        version = entry["service_version"]
        stats = stats_by_version.get(version) or Stats()
        # A version's rate counts only the part of the range it was live in.
        live_from = max(start, entry["first_seen"])
        live_to = min(end, now, entry["last_seen"] + MINUTE)
        live_seconds = max((live_to - live_from).total_seconds(), 60.0)
        figures = stats.figures(live_seconds)
        rows.append(
            {
                "version": version,
                "first_seen": entry["first_seen"].isoformat(),
                "last_seen": entry["last_seen"].isoformat(),
                **{key: figures[key] for key in ("requests", "rate", "error_pct", "p95_ms")},
            }
        )
    return sorted(rows, key=lambda row: row["first_seen"], reverse=True)


@dataclass(frozen=True)
class TraceFilters:
    start: datetime
    end: datetime
    service: str = ""
    route: str = ""
    errors: str = ""  # "", "only" or "none"
    min_duration_ms: float | None = None


def search_traces(filters: TraceFilters) -> list[dict]:
    """The latest traces with a span matching the filters, one row per trace."""
    matches = _matching_spans(filters)
    trace_ids: list[bytes] = []
    for trace_id, *_ in matches:
        if trace_id not in trace_ids:
            trace_ids.append(trace_id)
        if len(trace_ids) == TRACE_RESULTS:
            break
    if not trace_ids:
        return []
    summaries = _trace_summaries(trace_ids, filters)
    results = []
    for trace_id in trace_ids:
        match = next(row for row in matches if row[0] == trace_id)
        summary = summaries.get(trace_id, {})
        results.append(
            {
                "trace_id": hex_id(trace_id),
                "start_time": match[1].isoformat(),
                "service": match[2],
                "name": match[3],
                "route": match[4],
                "duration_ms": _ms(match[5]),
                "is_error": match[6],
                "http_status": match[7],
                **summary,
            }
        )
    return results


def _matching_spans(filters: TraceFilters) -> list[tuple]:
    conditions = ["start_time >= %s", "start_time < %s"]
    params: list = [filters.start, filters.end]
    if filters.service:
        conditions.append("service = %s")
        params.append(filters.service)
    if filters.route:
        conditions.append("(http_route = %s OR name = %s)")
        params += [filters.route, filters.route]
    if filters.errors == "only":
        conditions.append("is_error")
    elif filters.errors == "none":
        conditions.append("NOT is_error")
    if filters.min_duration_ms is not None:
        conditions.append("duration_us >= %s")
        params.append(int(filters.min_duration_ms * 1000))
    # Conditions are fixed strings chosen above; only values are parameters.
    sql = f"""
        SELECT trace_id, start_time, service, name, http_route, duration_us, is_error,
               http_status
        FROM telemetry_span WHERE {" AND ".join(conditions)}
        ORDER BY start_time DESC LIMIT %s
    """
    return _fetch(sql, [*params, TRACE_RESULTS * 4])


def _trace_summaries(trace_ids: list[bytes], filters: TraceFilters) -> dict[bytes, dict]:
    # Spans of a trace sit close in time; the margin lets partitions be pruned.
    margin = timedelta(hours=1)
    rows = _fetch(
        """
        SELECT trace_id, count(*), count(DISTINCT service), bool_or(is_error),
               min(start_time),
               max(start_time + duration_us * interval '1 microsecond')
        FROM telemetry_span
        WHERE trace_id = ANY(%s) AND start_time >= %s AND start_time < %s
        GROUP BY trace_id
        """,
        [trace_ids, filters.start - margin, filters.end + margin],
    )
    return {
        trace_id: {
            "span_count": count,
            "service_count": services,
            "trace_error": has_error,
            "trace_duration_ms": round((last - first).total_seconds() * 1000, 3),
        }
        for trace_id, count, services, has_error, first, last in rows
    }


def trace_waterfall(trace_id: bytes) -> dict | None:
    """The spans of one trace in tree order, placed on a shared time axis."""
    spans = list(Span.objects.filter(trace_id=trace_id).order_by("start_time"))
    if not spans:
        return None
    trace_start = min(span.start_time for span in spans)
    trace_end = max(span.start_time + timedelta(microseconds=span.duration_us) for span in spans)
    total_us = max((trace_end - trace_start) / timedelta(microseconds=1), 1)
    services = sorted({span.service for span in spans})
    colors = {name: SERVICE_COLORS[i % len(SERVICE_COLORS)] for i, name in enumerate(services)}
    rows = []
    for span, depth in _tree_order(spans):
        offset_us = (span.start_time - trace_start) / timedelta(microseconds=1)
        rows.append(
            {
                "span_id": hex_id(span.span_id),
                "parent_span_id": hex_id(span.parent_span_id),
                "depth": depth,
                "service": span.service,
                "color": colors[span.service],
                "version": span.service_version,
                "name": span.name,
                "kind": SpanKind(span.kind).label if span.kind in SpanKind.values else "",
                "start_time": span.start_time,
                "duration_ms": span.duration_ms,
                "offset_pct": round(100 * offset_us / total_us, 3),
                "width_pct": max(round(100 * span.duration_us / total_us, 3), 0.2),
                # The duration label sits right of the bar, or left of it near the end.
                "label_left_pct": round(100 * (offset_us + span.duration_us) / total_us, 3),
                "label_right_pct": round(100 - 100 * offset_us / total_us, 3),
                "is_error": span.is_error,
                "status_message": span.status_message,
                "http_method": span.http_method,
                "http_route": span.http_route,
                "http_status": span.http_status,
                "exception_type": span.exception_type,
                "attributes": _flat_items(span.attributes),
                "resource_attributes": _flat_items(span.resource_attributes),
                "events": [_event(event, span.start_time) for event in span.events or []],
            }
        )
    return {
        "trace_id": hex_id(trace_id),
        "start_time": trace_start,
        "duration_ms": round(total_us / 1000, 3),
        "span_count": len(spans),
        "services": [{"name": name, "color": colors[name]} for name in services],
        "error_count": sum(span.is_error for span in spans),
        "spans": rows,
    }


def _tree_order(spans: list[Span]) -> list[tuple[Span, int]]:
    """Depth-first, children by start time; spans whose parent is missing are roots."""
    ids = {span.span_id for span in spans}
    children: dict[bytes | None, list[Span]] = defaultdict(list)
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children[parent].append(span)
    ordered: list[tuple[Span, int]] = []
    stack = [(span, 0) for span in reversed(children[None])]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return ordered


def _flat_items(attributes) -> list[tuple[str, str]]:
    if not isinstance(attributes, dict):
        return []
    return sorted((str(key), _text(value)) for key, value in attributes.items())


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _event(event, span_start: datetime) -> dict:
    event = event if isinstance(event, dict) else {"name": _text(event)}
    try:
        at = datetime.fromtimestamp(int(event.get("time_unix_nano")) / 1e9, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        at = None
    return {
        "name": _text(event.get("name", "")),
        "time": at,
        "offset_ms": round((at - span_start) / timedelta(milliseconds=1), 3) if at else None,
        "attributes": _flat_items(event.get("attributes") or {}),
    }


def slo_sli_series(slo_id: int, start: datetime, end: datetime) -> list[dict]:
    """The SLI per step over the SLO window, from the SLO's per-minute counts."""
    step = sli_step(end - start)
    rows = _fetch(
        """
        SELECT date_bin(%s, minute, %s) AS bucket, sum(good)::bigint, sum(total)::bigint
        FROM slo_slominute WHERE slo_id = %s AND minute >= %s AND minute < %s
        GROUP BY bucket ORDER BY bucket
        """,
        [step, start, slo_id, start, end],
    )
    return [
        {"t": bucket.isoformat(), "sli_pct": _pct(good, total), "total": total}
        for bucket, good, total in rows
    ]


def sli_step(span: timedelta) -> timedelta:
    """About two hundred points across a window, in whole minutes."""
    return max(MINUTE, timedelta(minutes=int(span / MINUTE) // 200))


def example_traces(
    service: str, version: str, error_type: str, *, since: datetime, limit: int
) -> list[str]:
    """Trace ids of recent spans with this error type, as deploy analysis names types."""
    rows = _fetch(
        """
        SELECT DISTINCT ON (start_time, trace_id) trace_id FROM telemetry_span
        WHERE service = %s AND service_version = %s AND is_error AND start_time >= %s
          AND COALESCE(NULLIF(exception_type, ''), left(status_message, 200)) = %s
        ORDER BY start_time DESC, trace_id LIMIT %s
        """,
        [service, version, since, error_type, limit],
    )
    return [hex_id(trace_id) for (trace_id,) in rows]


DEPLOY_CHART_MARGIN = timedelta(hours=1)


def deploy_charts(
    service: str,
    version: str,
    previous_version: str,
    *,
    deployed_at: datetime,
    window_end: datetime | None,
    now: datetime,
) -> dict:
    """Error rate per version around the deploy, and both versions' latency histograms."""
    start = _floor(deployed_at, MINUTE) - DEPLOY_CHART_MARGIN
    end = min(max(deployed_at + DEPLOY_CHART_MARGIN, window_end or deployed_at), now)
    per_version: dict[str, list[dict]] = defaultdict(list)
    for minute, row_version, requests, errors in _fetch(
        """
        SELECT minute, version, sum(requests)::bigint, sum(errors)::bigint
        FROM telemetry_rollupminute
        WHERE service = %s AND minute >= %s AND minute < %s AND span_kind = ANY(%s)
        GROUP BY minute, version ORDER BY minute
        """,
        [service, start, end, REQUEST_KINDS],
    ):
        per_version[row_version].append(
            {"t": minute.isoformat(), "requests": requests, "error_pct": _pct(errors, requests)}
        )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "error_rate": [
            {"version": name, "is_new": name == version, "points": points}
            for name, points in sorted(per_version.items())
        ],
        "latency": _latency_distributions(
            service, version, previous_version, deployed_at=deployed_at, end=end
        ),
    }


def _latency_distributions(
    service: str, version: str, previous_version: str, *, deployed_at: datetime, end: datetime
) -> dict:
    counts = {version: histogram.empty(), previous_version: histogram.empty()}
    for row_version, index, count in _fetch(
        """
        SELECT version, d.i - 1, sum(d.c)::bigint
        FROM telemetry_rollupminute
        CROSS JOIN LATERAL unnest(latency_histogram) WITH ORDINALITY AS d(c, i)
        WHERE service = %(service)s AND span_kind = ANY(%(kinds)s) AND d.c > 0
          AND ((version = %(new)s AND minute >= %(deployed)s AND minute < %(end)s)
            OR (version = %(old)s AND minute >= %(baseline)s AND minute < %(end)s))
        GROUP BY version, d.i
        """,
        {
            "service": service,
            "kinds": REQUEST_KINDS,
            "new": version,
            "old": previous_version,
            "deployed": _floor(deployed_at, MINUTE),
            "baseline": _floor(deployed_at, MINUTE) - DEPLOY_CHART_MARGIN,
            "end": end,
        },
    ):
        counts[row_version][index] += count
    used = [i for i in range(histogram.BUCKET_COUNT) if any(c[i] for c in counts.values())]
    if not used:
        return {"buckets": [], "baseline": [], "candidate": []}
    indexes = range(used[0], used[-1] + 1)

    def shares(buckets: list[int]) -> list[float]:
        total = sum(buckets)
        return [round(100 * buckets[i] / total, 3) if total else 0.0 for i in indexes]

    return {
        "buckets": [_bucket_label(i) for i in indexes],
        "baseline": shares(counts[previous_version]) if previous_version else [],
        "candidate": shares(counts[version]),
        "baseline_requests": sum(counts[previous_version]) if previous_version else 0,
        "candidate_requests": sum(counts[version]),
    }


def _bucket_label(index: int) -> dict:
    lower, upper = histogram.bucket_range_us(index)
    return {"lower_ms": lower / 1000, "upper_ms": None if upper is None else upper / 1000}
