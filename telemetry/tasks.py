from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from telemetry import flag_store, partitions, ratelimit, rollups


@shared_task(acks_late=True)
def enforce_retention() -> int:
    """Drop the daily span partitions that fell out of retention, and old rollups."""
    cutoff = timezone.now() - timedelta(days=settings.MONOENV_RETENTION_DAYS)
    dropped = len(partitions.drop_partitions_before(cutoff))
    rollups.prune_rollups()
    flag_store.prune_evaluations(cutoff)
    # A bucket idle this long is full again, so dropping it changes no limit.
    idle = max(timedelta(days=1), timedelta(seconds=settings.MONOENV_LOGIN_WINDOW_SECONDS))
    ratelimit.prune(idle_for=idle)
    return dropped


@shared_task(acks_late=True)
def rollup_pending() -> int:
    """Recompute the per-minute rollups of every minute ingest marked as changed."""
    return rollups.rollup_pending()


@shared_task(acks_late=True)
def attribute_flag_evaluations() -> dict:
    """Attribute the flag evaluations ingest could not attribute at once to their requests."""
    # Within the 30 s beat interval, so two runs do not pile up.
    return flag_store.attribute_pending_for(25)
