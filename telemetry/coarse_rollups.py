"""Five-minute and hourly rollups derived from the minute rollups, and chart reads.

Whenever telemetry/rollups.py recomputes some minutes of a service, refresh()
rebuilds the five-minute buckets holding those minutes from the minute
rollups, then the hours holding them from the five-minute buckets, inside the
same transaction. Rebuilding is idempotent like the minute rollup itself, so
the coarse counts always add up to the minute counts.

The reads return request counts, error counts and merged latency histograms
(Totals) per chart bucket, route, version or service; they pick the finest
stored resolution that the step is a whole multiple of. Only request spans
(spans.REQUEST_KINDS) are counted.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

from telemetry import histogram
from telemetry.spans import REQUEST_KINDS

MINUTE, FIVE_MINUTES, HOUR = 60, 300, 3600
# Bucket starts are aligned on this origin, as date_bin() in the reads is.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
KEEP = timedelta(days=35)

_FROM_MINUTES = """
    SELECT r.route, r.version, b.start, r.requests, r.errors, r.latency_histogram AS hist
    FROM unnest(%(starts)s::timestamptz[]) AS b(start)
    JOIN telemetry_rollupminute AS r ON r.service = %(service)s
     AND r.minute >= b.start AND r.minute < b.start + %(step)s
     AND r.span_kind = ANY(%(kinds)s)
"""
_UNNEST_MINUTES = "(SELECT i - 1 AS i, c FROM unnest(src.hist) WITH ORDINALITY AS d(c, i)) AS u"
_FROM_FIVE_MINUTES = """
    SELECT r.route, r.version, b.start, r.requests, r.errors,
           r.bucket_indexes AS idx, r.bucket_counts AS cnt
    FROM unnest(%(starts)s::timestamptz[]) AS b(start)
    JOIN telemetry_coarserollup AS r ON r.service = %(service)s AND r.resolution = 300
     AND r.start >= b.start AND r.start < b.start + %(step)s
"""
_UNNEST_COARSE = "unnest(src.idx, src.cnt) AS u(i, c)"
_REBUILD = """
    WITH src AS ({source}),
    totals AS (
        SELECT route, version, start, sum(requests) AS requests, sum(errors) AS errors
        FROM src GROUP BY route, version, start
    ),
    hist AS (
        SELECT route, version, start, u.i, sum(u.c) AS c
        FROM src CROSS JOIN LATERAL {unnest} WHERE u.c > 0
        GROUP BY route, version, start, u.i
    ),
    packed AS (
        SELECT route, version, start, array_agg(i ORDER BY i)::smallint[] AS idx,
               array_agg(c ORDER BY i)::bigint[] AS cnt
        FROM hist GROUP BY route, version, start
    )
    INSERT INTO telemetry_coarserollup
        (service, route, version, resolution, start, requests, errors,
         bucket_indexes, bucket_counts)
    SELECT %(service)s, t.route, t.version, %(resolution)s, t.start, t.requests, t.errors,
           coalesce(p.idx, '{{}}'), coalesce(p.cnt, '{{}}')
    FROM totals AS t LEFT JOIN packed AS p USING (route, version, start)
"""


def floor(moment: datetime, seconds: int) -> datetime:
    step = timedelta(seconds=seconds)
    return ORIGIN + ((moment - ORIGIN) // step) * step


def _ceil(moment: datetime, seconds: int) -> datetime:
    floored = floor(moment, seconds)
    return floored if floored == moment else floored + timedelta(seconds=seconds)


def refresh(service: str, minutes: list[datetime]) -> None:
    """Rebuild the five-minute buckets and hours that hold these minutes."""
    if not minutes:
        return
    five_minute_starts = sorted({floor(minute, FIVE_MINUTES) for minute in minutes})
    hour_starts = sorted({floor(minute, HOUR) for minute in minutes})
    _rebuild(service, FIVE_MINUTES, five_minute_starts, _FROM_MINUTES, _UNNEST_MINUTES)
    _rebuild(service, HOUR, hour_starts, _FROM_FIVE_MINUTES, _UNNEST_COARSE)
    _prune(service, before=timezone.now() - KEEP)


def _rebuild(
    service: str, resolution: int, starts: list[datetime], source: str, unnest: str
) -> None:
    params = {
        "service": service,
        "resolution": resolution,
        "starts": starts,
        "step": timedelta(seconds=resolution),
        "kinds": list(REQUEST_KINDS),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM telemetry_coarserollup WHERE service = %(service)s "
            "AND resolution = %(resolution)s AND start = ANY(%(starts)s::timestamptz[])",
            params,
        )
        cursor.execute(_REBUILD.format(source=source, unnest=unnest), params)


def _prune(service: str, *, before: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM telemetry_coarserollup WHERE service = %s "
            "AND resolution = ANY(%s) AND start < %s",
            [service, [FIVE_MINUTES, HOUR], before],
        )


# Reads.


@dataclass
class Totals:
    """Requests, errors and a merged latency histogram (telemetry.histogram buckets)."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=histogram.empty)

    def percentile_us(self, quantile: float) -> float | None:
        return histogram.percentile_us(self.buckets, quantile)

    def combined(self, *, minus: "Totals | None" = None, plus: "Totals | None" = None) -> "Totals":
        """These totals with others taken off and added: counts and histograms are sums."""
        found = Totals(self.requests, self.errors, list(self.buckets))
        for other, sign in ((minus, -1), (plus, 1)):
            if other is not None:
                found.requests += sign * other.requests
                found.errors += sign * other.errors
                pairs = zip(found.buckets, other.buckets, strict=True)
                found.buckets = [mine + sign * theirs for mine, theirs in pairs]
        return found


@dataclass
class Breakdown:
    """One service over a range: Totals per chart bucket, route, version and overall."""

    buckets: dict[datetime, Totals]
    routes: dict[str, Totals]
    versions: dict[str, Totals]
    overall: Totals

    def shifted(self, *, dropped: "Breakdown", added: "Breakdown") -> "Breakdown":
        """This range with the buckets at its start taken off and new ones put on its end.

        `dropped` and `added` are breakdown()s of those buckets as stored now.
        Every figure is a sum, so the result equals breakdown() of the moved
        range whenever this one still matches its rows (its fingerprint).
        """
        buckets = {at: totals for at, totals in self.buckets.items() if at not in dropped.buckets}
        buckets.update(added.buckets)
        return Breakdown(
            buckets=buckets,
            routes=_shifted(self.routes, dropped.routes, added.routes),
            versions=_shifted(self.versions, dropped.versions, added.versions),
            overall=self.overall.combined(minus=dropped.overall, plus=added.overall),
        )


def _shifted(kept: dict, dropped: dict, added: dict) -> dict:
    found = {}
    for key in kept.keys() | added.keys():
        base = kept.get(key) or Totals()
        totals = base.combined(minus=dropped.get(key), plus=added.get(key))
        # A route or version seen only in the dropped buckets leaves the range.
        if totals.requests or any(totals.buckets):
            found[key] = totals
    return found


@dataclass(frozen=True)
class _Source:
    table: str
    time_column: str
    condition: str
    histogram_columns: str
    unnest: str


_MINUTE_SOURCE = _Source(
    "telemetry_rollupminute",
    "minute",
    "span_kind = ANY(%(kinds)s)",
    "latency_histogram AS hist",
    _UNNEST_MINUTES,
)
_FIVE_MINUTE_SOURCE = _Source(
    "telemetry_coarserollup",
    "start",
    f"resolution = {FIVE_MINUTES}",
    "bucket_indexes AS idx, bucket_counts AS cnt",
    _UNNEST_COARSE,
)
_HOUR_SOURCE = _Source(
    "telemetry_coarserollup",
    "start",
    f"resolution = {HOUR}",
    "bucket_indexes AS idx, bucket_counts AS cnt",
    _UNNEST_COARSE,
)


def _source(step: timedelta) -> _Source:
    seconds = int(step.total_seconds())
    if seconds % HOUR == 0:
        return _HOUR_SOURCE
    if seconds % FIVE_MINUTES == 0:
        return _FIVE_MINUTE_SOURCE
    return _MINUTE_SOURCE


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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


def breakdown(service: str, *, start: datetime, end: datetime, step: timedelta) -> Breakdown:
    """Totals of one service's requests in [start, end) in one scan.

    start and end must be aligned on step (from ORIGIN); buckets are keyed by
    their start.
    """
    source = _source(step)
    sql = _BREAKDOWN_SQL.format(**source.__dict__)
    params = {
        "step": step,
        "origin": ORIGIN,
        "service": service,
        "start": start,
        "end": end,
        "kinds": list(REQUEST_KINDS),
    }
    groups: dict[int, dict] = {_BY_BUCKET: {}, _BY_ROUTE: {}, _BY_VERSION: {}, _OVERALL: {}}
    for grouping, bucket, route, version, index, count, errors in _fetch(sql, params):
        key = {_BY_BUCKET: bucket, _BY_ROUTE: route, _BY_VERSION: version}.get(grouping)
        totals = groups[grouping].setdefault(key, Totals())
        _add(totals, index, count, errors)
    return Breakdown(
        buckets=groups[_BY_BUCKET],
        routes=groups[_BY_ROUTE],
        versions=groups[_BY_VERSION],
        overall=groups[_OVERALL].get(None) or Totals(),
    )


def fingerprint(service: str, *, start: datetime, end: datetime, step: timedelta) -> tuple:
    """Rows, requests and errors of the rows breakdown() reads, read without their histograms.

    Rows are only ever rebuilt from the spans stored, and spans are only added
    (or dropped whole by retention), so a rebuilt row changes these sums: equal
    fingerprints mean an equal breakdown. About a tenth of breakdown()'s work.
    """
    source = _source(step)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(requests), 0), coalesce(sum(errors), 0) "
            f"FROM {source.table} WHERE service = %(service)s "
            f"AND {source.time_column} >= %(start)s AND {source.time_column} < %(end)s "
            f"AND {source.condition}",
            {"service": service, "start": start, "end": end, "kinds": list(REQUEST_KINDS)},
        )
        return tuple(int(value) for value in cursor.fetchone())


def _add(totals: Totals, index: int | None, count: int | None, errors: int | None) -> None:
    if index is None:
        # The overall grouping set yields one row even over no rows: NULL sums.
        totals.requests, totals.errors = count or 0, errors or 0
    else:
        totals.buckets[index] += count


def per_service(*, start: datetime, end: datetime) -> dict[str, Totals]:
    """Totals of every service over [start, end), aligned on minutes.

    The whole five-minute buckets inside the range are read from the
    five-minute rows and the minutes at either edge from the minute rollups:
    the same counts as summing every minute (refresh() keeps the two equal),
    from a fifth of the rows, so any minute-aligned range is as cheap as a
    five-minute one and every page can use the same range.
    """
    inner_start = min(_ceil(start, FIVE_MINUTES), end)
    inner_end = max(inner_start, floor(end, FIVE_MINUTES))
    per: dict[str, Totals] = {}
    for service, index, count, errors in _fetch(
        """
        SELECT service, NULL::int, sum(requests)::bigint, sum(errors)::bigint
        FROM telemetry_coarserollup
        WHERE resolution = %(resolution)s AND start >= %(inner_start)s AND start < %(inner_end)s
        GROUP BY service
        UNION ALL
        SELECT service, u.i, sum(u.c)::bigint, NULL FROM telemetry_coarserollup
        CROSS JOIN LATERAL unnest(bucket_indexes, bucket_counts) AS u(i, c)
        WHERE resolution = %(resolution)s AND start >= %(inner_start)s AND start < %(inner_end)s
        GROUP BY service, u.i
        UNION ALL
        SELECT service, NULL::int, sum(requests)::bigint, sum(errors)::bigint
        FROM telemetry_rollupminute WHERE span_kind = ANY(%(kinds)s) AND (
            (minute >= %(start)s AND minute < %(inner_start)s)
            OR (minute >= %(inner_end)s AND minute < %(end)s))
        GROUP BY service
        UNION ALL
        SELECT service, u.i - 1, sum(u.c)::bigint, NULL FROM telemetry_rollupminute
        CROSS JOIN LATERAL unnest(latency_histogram) WITH ORDINALITY AS u(c, i)
        WHERE span_kind = ANY(%(kinds)s) AND u.c > 0 AND (
            (minute >= %(start)s AND minute < %(inner_start)s)
            OR (minute >= %(inner_end)s AND minute < %(end)s))
        GROUP BY service, u.i
        """,
        {
            "resolution": FIVE_MINUTES,
            "start": start,
            "end": end,
            "inner_start": inner_start,
            "inner_end": inner_end,
            "kinds": list(REQUEST_KINDS),
        },
    ):
        _add_summed(per.setdefault(service, Totals()), index, count, errors)
    return per


def _add_summed(totals: Totals, index: int | None, count: int | None, errors: int | None) -> None:
    """Like _add, for reads that yield a service's totals in more than one row."""
    if index is None:
        totals.requests += count or 0
        totals.errors += errors or 0
    else:
        totals.buckets[index] += count


def requests_per_minute(*, start: datetime, end: datetime) -> dict[str, dict[datetime, int]]:
    """Requests of every service per minute in [start, end), for sparklines."""
    per: dict[str, dict[datetime, int]] = {}
    for service, minute, requests in _fetch(
        """
        SELECT service, minute, sum(requests)::bigint FROM telemetry_rollupminute
        WHERE minute >= %s AND minute < %s AND span_kind = ANY(%s)
        GROUP BY service, minute
        """,
        [start, end, list(REQUEST_KINDS)],
    ):
        per.setdefault(service, {})[minute] = requests
    return per
