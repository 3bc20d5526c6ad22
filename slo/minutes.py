"""Per-SLO good and total counts per minute, always counted from raw spans.

Latency SLIs therefore use the exact threshold, never histogram buckets. The
rollup recomputes a service's minutes (telemetry.rollups.minutes_recomputed),
and a new or changed SLO is backfilled over its window, as far back as the
raw spans are kept. Spans are read only through telemetry.spans, with the
SLO's SpanSelection and GoodRule (SLO.span_selection, SLO.good_rule).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from slo.models import SLO, SLOMinute
from telemetry import spans


def _count(slo: SLO, **when) -> list[SLOMinute]:
    rows = spans.good_total_per_minute(slo.span_selection, slo.good_rule, **when)
    return [SLOMinute(slo=slo, minute=minute, good=good, total=total)
            for minute, good, total in rows]  # fmt: skip


def recompute_minutes(slo: SLO, minutes: list[datetime]) -> None:
    """Recount these minutes of one SLO from the spans stored now."""
    counted = _count(slo, minutes=minutes)
    with transaction.atomic():
        SLOMinute.objects.filter(slo=slo, minute__in=minutes).delete()
        SLOMinute.objects.bulk_create(counted)


def backfill(slo: SLO, *, now: datetime | None = None) -> None:
    """Rebuild all of an SLO's minutes over its lookback, from the kept spans."""
    now = now or timezone.now()
    kept_from = now - timedelta(days=settings.MONOENV_RETENTION_DAYS)
    start = max(now - slo.longest_lookback, kept_from)
    end = now + timedelta(seconds=settings.MONOENV_MAX_FUTURE_SECONDS)
    with transaction.atomic():
        counted = _count(slo, start=start, end=end)
        SLOMinute.objects.filter(slo=slo).delete()
        SLOMinute.objects.bulk_create(counted, batch_size=5_000)
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
