"""Per-SLO good and total counts per minute, always counted from raw spans.

Latency SLIs therefore use the exact threshold, never histogram buckets. The
rollup recomputes a service's minutes (telemetry.rollups.minutes_recomputed),
and a new or changed SLO is backfilled over its window, as far back as the
raw spans are kept.
"""

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from slo.models import SLI, SLO, SLOMinute

_UPSERT = """
    INSERT INTO slo_slominute (slo_id, minute, good, total)
    SELECT %s, date_trunc('minute', span.start_time) AS minute,
           count(*) FILTER (WHERE {good}), count(*)
    FROM {source}
    WHERE {selection}
    GROUP BY 2
    ON CONFLICT (slo_id, minute) DO UPDATE SET good = EXCLUDED.good, total = EXCLUDED.total
"""
_FROM_MINUTES = """
    unnest(%s::timestamptz[]) AS changed(minute)
    JOIN telemetry_span AS span ON span.start_time >= changed.minute
     AND span.start_time < changed.minute + interval '1 minute'
"""
_FROM_RANGE = "telemetry_span AS span"


def span_selection_sql(slo: SLO) -> tuple[str, list]:
    clauses, params = ["span.service = %s", "span.kind = %s"], [slo.service, slo.span_kind]
    if slo.route.endswith("*"):
        clauses.append("starts_with(span.http_route, %s)")
        params.append(slo.route[:-1])
    elif slo.route:
        clauses.append("span.http_route = %s")
        params.append(slo.route)
    return " AND ".join(clauses), params


def good_condition_sql(slo: SLO) -> tuple[str, list]:
    if slo.sli == SLI.AVAILABILITY:
        return "NOT span.is_error", []
    # duration_ms <= threshold_ms, in whole microseconds as spans store them.
    threshold_us = math.floor(slo.threshold_ms * 1000)
    if slo.latency_requires_success:
        return "span.duration_us <= %s AND NOT span.is_error", [threshold_us]
    return "span.duration_us <= %s", [threshold_us]


def recompute_minutes(slo: SLO, minutes: list[datetime]) -> None:
    """Recount these minutes of one SLO from the spans stored now."""
    selection, selection_params = span_selection_sql(slo)
    good, good_params = good_condition_sql(slo)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM slo_slominute WHERE slo_id = %s AND minute = ANY(%s::timestamptz[])",
            [slo.pk, minutes],
        )
        cursor.execute(
            _UPSERT.format(good=good, source=_FROM_MINUTES, selection=selection),
            [slo.pk, *good_params, minutes, *selection_params],
        )


def backfill(slo: SLO, *, now: datetime | None = None) -> None:
    """Rebuild all of an SLO's minutes over its lookback, from the kept spans."""
    now = now or timezone.now()
    kept_from = now - timedelta(days=settings.MONOENV_RETENTION_DAYS)
    start = max(now - slo.longest_lookback, kept_from)
    end = now + timedelta(seconds=settings.MONOENV_MAX_FUTURE_SECONDS)
    selection, selection_params = span_selection_sql(slo)
    good, good_params = good_condition_sql(slo)
    with transaction.atomic(), connection.cursor() as cursor:
        SLOMinute.objects.filter(slo=slo).delete()
        cursor.execute(
            _UPSERT.format(
                good=good,
                source=_FROM_RANGE,
                selection=f"{selection} AND span.start_time >= %s AND span.start_time < %s",
            ),
            [slo.pk, *good_params, *selection_params, start, end],
        )
        SLO.objects.filter(pk=slo.pk).update(backfilled_key=slo.selection_key)
    slo.backfilled_key = slo.selection_key


def on_minutes_recomputed(sender, *, service: str, minutes: list[datetime], **kwargs) -> None:
    """Receiver of telemetry.rollups.minutes_recomputed, inside its transaction."""
    for slo in SLO.objects.filter(service=service):
        recompute_minutes(slo, minutes)


def prune(*, now: datetime | None = None) -> int:
    """Delete minutes older than any window of their SLO reads."""
    now = now or timezone.now()
    deleted = 0
    for slo in SLO.objects.only("id", "window", "timezone"):
        cutoff = now - slo.longest_lookback - timedelta(days=1)
        deleted += SLOMinute.objects.filter(slo=slo, minute__lt=cutoff).delete()[0]
    return deleted
