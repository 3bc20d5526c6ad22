"""Daily partitions of the span table: created on demand, dropped by retention."""

import logging
import threading
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction

logger = logging.getLogger(__name__)

PARENT_TABLE = "telemetry_span"
# Serialises partition DDL across processes; the value is arbitrary but fixed.
_DDL_LOCK_ID = 0x6D6F6E6F
_known_days: set[date] = set()
_known_days_lock = threading.Lock()


def partition_name(day: date) -> str:
    return f"{PARENT_TABLE}_p{day:%Y%m%d}"


def ensure_partitions(days: set[date]) -> None:
    """Create the daily partitions these days need, unless known to exist."""
    with _known_days_lock:
        missing = days - _known_days
    if not missing:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK_ID])
        for day in sorted(missing):
            cursor.execute(_create_partition_sql(day))
    with _known_days_lock:
        _known_days.update(missing)


def forget_partitions() -> None:
    """Drop the cache, for when another process dropped a partition we knew."""
    with _known_days_lock:
        _known_days.clear()


def _create_partition_sql(day: date) -> str:
    # Dates come from datetime objects, never from request text.
    lower = datetime.combine(day, time(), tzinfo=UTC)
    upper = lower + timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {PARENT_TABLE} "
        f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
    )


def existing_partition_days() -> list[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = %s
            """,
            [PARENT_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    prefix = f"{PARENT_TABLE}_p"
    return sorted(datetime.strptime(name[len(prefix) :], "%Y%m%d").date() for name in names)


def drop_partitions_before(cutoff: datetime) -> list[date]:
    """Drop every partition whose spans all started before the cutoff."""
    from telemetry.models import ServiceDay

    dropped = [day for day in existing_partition_days() if day + timedelta(days=1) <= cutoff.date()]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK_ID])
        for day in dropped:
            cursor.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
        if dropped:
            ServiceDay.objects.filter(day__lte=dropped[-1]).delete()
    forget_partitions()
    if dropped:
        logger.info("retention dropped %d partition(s): %s", len(dropped), dropped)
    return dropped
