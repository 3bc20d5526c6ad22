"""Five-minute and hourly rollups for the dashboard's longer ranges.

telemetry recomputes per-minute rollups and signals the minutes it touched;
this rebuilds the five-minute buckets holding those minutes from the minute
rollups, then the hours holding them from the five-minute buckets, inside the
same transaction. Rebuilding is idempotent like the minute rollup itself.
"""

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

from telemetry.models import SpanKind

FIVE_MINUTES = 300
HOUR = 3600
# Bucket starts are aligned on this origin, as date_bin() in the reads is.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
REQUEST_KINDS = [SpanKind.SERVER, SpanKind.CONSUMER]
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
    JOIN dashboard_coarserollup AS r ON r.service = %(service)s AND r.resolution = 300
     AND r.start >= b.start AND r.start < b.start + %(step)s
"""
_UNNEST_FIVE_MINUTES = "unnest(src.idx, src.cnt) AS u(i, c)"
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
    INSERT INTO dashboard_coarserollup
        (service, route, version, resolution, start, requests, errors,
         bucket_indexes, bucket_counts)
    SELECT %(service)s, t.route, t.version, %(resolution)s, t.start, t.requests, t.errors,
           coalesce(p.idx, '{{}}'), coalesce(p.cnt, '{{}}')
    FROM totals AS t LEFT JOIN packed AS p USING (route, version, start)
"""


def floor(moment: datetime, seconds: int) -> datetime:
    step = timedelta(seconds=seconds)
    return ORIGIN + ((moment - ORIGIN) // step) * step


def on_minutes_recomputed(sender, *, service: str, minutes: list[datetime], **kwargs) -> None:
    """Receiver of telemetry.rollups.minutes_recomputed, inside its transaction."""
    refresh(service, minutes)


def refresh(service: str, minutes: list[datetime]) -> None:
    """Rebuild the five-minute buckets and hours that hold these minutes."""
    if not minutes:
        return
    five_minute_starts = sorted({floor(minute, FIVE_MINUTES) for minute in minutes})
    hour_starts = sorted({floor(minute, HOUR) for minute in minutes})
    _rebuild(service, FIVE_MINUTES, five_minute_starts, _FROM_MINUTES, _UNNEST_MINUTES)
    _rebuild(service, HOUR, hour_starts, _FROM_FIVE_MINUTES, _UNNEST_FIVE_MINUTES)
    _prune(service, before=timezone.now() - KEEP)


def _rebuild(
    service: str, resolution: int, starts: list[datetime], source: str, unnest: str
) -> None:
    params = {
        "service": service,
        "resolution": resolution,
        "starts": starts,
        "step": timedelta(seconds=resolution),
        "kinds": REQUEST_KINDS,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM dashboard_coarserollup WHERE service = %(service)s "
            "AND resolution = %(resolution)s AND start = ANY(%(starts)s::timestamptz[])",
            params,
        )
        cursor.execute(_REBUILD.format(source=source, unnest=unnest), params)


def _prune(service: str, *, before: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM dashboard_coarserollup WHERE service = %s "
            "AND resolution = ANY(%s) AND start < %s",
            [service, [FIVE_MINUTES, HOUR], before],
        )
