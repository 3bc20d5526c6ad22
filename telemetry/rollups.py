"""Per-minute rollups of the raw spans, recomputed minute by minute.

Ingest marks every (service, minute) a stored batch touches as pending,
however late its spans are. rollup_pending() reads those rows and, in one
transaction per batch, recomputes the minutes' rollups from the raw spans
(delete, then insert from a GROUP BY) and the five-minute and hourly rollups
derived from them (telemetry/coarse_rollups.py), then forgets the rows nobody
marked again meanwhile. It takes no lock that ingest would wait on. Recomputing is
idempotent, so a minute touched twice or rolled up twice is still counted
once, and a crash before commit leaves the pending rows for the next run.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from telemetry import coarse_rollups, histogram, spans
from telemetry.models import PendingMinute, RollupMinute

# Sent inside the rollup transaction with service= and minutes= (sorted, UTC),
# so downstream apps can recompute what they derive from those spans.
minutes_recomputed = Signal()

CLAIM_BATCH_SIZE = 500

_ROLLUP_COLUMNS = (
    "service", "route", "version", "span_kind", "minute", "requests", "errors",
    "latency_histogram",
)  # fmt: skip


# One rollup at a time; a second worker finds the lock taken and leaves.
_ROLLUP_LOCK_ID = 0x726F6C6C


def rollup_pending(*, batch_size: int = CLAIM_BATCH_SIZE) -> int:
    """Recompute every minute pending when called; return how many were done.

    Minutes marked while this runs wait for the next run, so a busy ingest
    cannot keep one call going for ever.
    """
    newest_id = PendingMinute.objects.order_by("-id").values_list("id", flat=True).first()
    after_id, done = 0, 0
    while newest_id is not None:
        with transaction.atomic():
            if not _take_rollup_lock():
                break
            pending = _pending_batch(after_id, newest_id, batch_size)
            if not pending:
                break
            recompute(sorted({(service, minute) for _, service, minute, _ in pending}))
            _forget_unchanged(pending)
        after_id = pending[-1][0]
        done += len(pending)
    return done


def _take_rollup_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_ROLLUP_LOCK_ID])
        return cursor.fetchone()[0]


def _pending_batch(after_id: int, newest_id: int, batch_size: int) -> list[tuple]:
    # No row locks: an ingest batch marking one of these minutes must not wait
    # for the recompute. _forget_unchanged() settles what changed meanwhile.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, service, minute, marks FROM telemetry_pendingminute "
            "WHERE id > %s AND id <= %s ORDER BY id LIMIT %s",
            [after_id, newest_id, batch_size],
        )
        return cursor.fetchall()


def _forget_unchanged(pending: list[tuple]) -> None:
    """Delete the pending rows that no batch marked again since we read them.

    A batch still committing holds its marked row locked, so this waits for
    it, then sees the new mark count and keeps the row for the next run: its
    spans were invisible to the recompute.
    """
    ids, marks = [row[0] for row in pending], [row[3] for row in pending]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM telemetry_pendingminute AS pending
            USING unnest(%s::bigint[], %s::bigint[]) AS seen(id, marks)
            WHERE pending.id = seen.id AND pending.marks = seen.marks
            """,
            [ids, marks],
        )


def recompute(service_minutes: list[tuple[str, datetime]]) -> None:
    """Rebuild the rollups of these (service, minute) pairs from the raw spans."""
    if not service_minutes:
        return
    services, minutes = (list(column) for column in zip(*service_minutes, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM telemetry_rollupminute AS rollup
            USING unnest(%s::text[], %s::timestamptz[]) AS claimed(service, minute)
            WHERE rollup.service = claimed.service AND rollup.minute = claimed.minute
            """,
            [services, minutes],
        )
        cursor.execute(
            """
            SELECT span.service, span.http_route, span.service_version, span.kind,
                   claimed.minute, width_bucket(span.duration_us, %s::bigint[]),
                   count(*), count(*) FILTER (WHERE span.is_error)
            FROM unnest(%s::text[], %s::timestamptz[]) AS claimed(service, minute)
            JOIN telemetry_span AS span ON span.service = claimed.service
             AND span.start_time >= claimed.minute
             AND span.start_time < claimed.minute + interval '1 minute'
            GROUP BY 1, 2, 3, 4, 5, 6
            """,
            [list(histogram.LOWER_BOUNDS_US), services, minutes],
        )
        rows = _fold_buckets(cursor.fetchall())
        with cursor.cursor.copy(
            f"COPY telemetry_rollupminute ({', '.join(_ROLLUP_COLUMNS)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
    by_service = defaultdict(list)
    for service, minute in service_minutes:
        by_service[service].append(minute)
    for service, service_minute_list in by_service.items():
        coarse_rollups.refresh(service, sorted(service_minute_list))
        minutes_recomputed.send(
            sender=RollupMinute, service=service, minutes=sorted(service_minute_list)
        )


def _fold_buckets(bucket_rows) -> list[tuple]:
    """One row per rollup key from one row per (key, bucket)."""
    folded: dict[tuple, list] = {}
    for service, route, version, kind, minute, bucket, count, errors in bucket_rows:
        entry = folded.setdefault(
            (service, route, version, kind, minute), [0, 0, histogram.empty()]
        )
        entry[0] += count
        entry[1] += errors
        entry[2][bucket] += count
    return [(*key, *entry) for key, entry in folded.items()]


@dataclass(frozen=True)
class MinutePoint:
    minute: datetime
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    complete: bool


def latency_series(
    service: str, *, start: datetime, end: datetime, route: str | None = None, now=None
) -> list[MinutePoint]:
    """Requests, errors and percentiles per minute, for charts.

    A minute counts as complete once MONOENV_ROLLUP_LATENESS_MINUTES have
    passed since it ended; later spans still update it, but a chart can show
    the newest minutes as provisional.
    """
    now = now or timezone.now()
    complete_before = now - timedelta(minutes=settings.MONOENV_ROLLUP_LATENESS_MINUTES + 1)
    rollups = RollupMinute.objects.filter(service=service, minute__gte=start, minute__lt=end)
    if route is not None:
        rollups = rollups.filter(route=route)
    per_minute: dict[datetime, list] = {}
    for minute, requests, errors, buckets in rollups.values_list(
        "minute", "requests", "errors", "latency_histogram"
    ):
        entry = per_minute.setdefault(minute, [0, 0, []])
        entry[0] += requests
        entry[1] += errors
        entry[2].append(buckets)
    points = []
    for minute in sorted(per_minute):
        requests, errors, histograms = per_minute[minute]
        merged = histogram.merge(histograms)
        p50, p95, p99 = (_ms(histogram.percentile_us(merged, q)) for q in (0.5, 0.95, 0.99))
        points.append(
            MinutePoint(minute, requests, errors, p50, p95, p99, minute <= complete_before)
        )
    return points


def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else microseconds / 1000


def prune_rollups(*, now=None) -> int:
    """Delete rollups older than MONOENV_ROLLUP_RETENTION_DAYS."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MONOENV_ROLLUP_RETENTION_DAYS)
    deleted, _ = RollupMinute.objects.filter(minute__lt=cutoff).delete()
    return deleted


def request_minutes(*, start: datetime, end: datetime):
    """Every minute rollup of request spans in [start, end), as
    (service, route, minute, requests, errors, latency_histogram) rows, streamed."""
    return (
        RollupMinute.objects.filter(
            span_kind__in=spans.REQUEST_KINDS, minute__gte=start, minute__lt=end
        )
        .values_list("service", "route", "minute", "requests", "errors", "latency_histogram")
        .iterator()
    )
