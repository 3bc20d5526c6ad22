from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from telemetry import partitions


@shared_task(acks_late=True)
def enforce_retention() -> int:
    """Drop the daily span partitions that fell out of retention."""
    cutoff = timezone.now() - timedelta(days=settings.MONOENV_RETENTION_DAYS)
    return len(partitions.drop_partitions_before(cutoff))
