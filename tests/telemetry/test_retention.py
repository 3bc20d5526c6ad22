"""Retention drops whole daily partitions, with their service-day counts."""

import dataclasses
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from telemetry import otlp, partitions
from telemetry.ingest import current_limits, store_rows
from telemetry.models import ServiceDay, Span
from telemetry.tasks import enforce_retention
from tests.telemetry.otlp_payloads import make_request, make_span


def rows_starting_at(*starts: datetime, service: str = "billing") -> list[tuple]:
    """Span rows as ingest makes them, but with limits that let old spans through."""
    request = make_request(
        [make_span(name=f"span {index}", start=start) for index, start in enumerate(starts)],
        resource={"service.name": service},
    )
    anything_goes = dataclasses.replace(
        current_limits(),
        oldest=datetime(2000, 1, 1, tzinfo=UTC),
        newest=datetime(2100, 1, 1, tzinfo=UTC),
    )
    batch = otlp.spans_to_rows(request, anything_goes)
    assert not batch.rejected
    return batch.rows


@pytest.fixture
def two_weeks_retention(settings):
    settings.MONOENV_RETENTION_DAYS = 14


def test_it_drops_partitions_out_of_retention(db, two_weeks_retention):
    now = timezone.now()
    old_days = [now - timedelta(days=40), now - timedelta(days=16), now - timedelta(days=15)]
    recent_days = [now - timedelta(days=13), now - timedelta(days=1), now]
    store_rows(rows_starting_at(*old_days, *recent_days))
    assert len(partitions.existing_partition_days()) == 6

    dropped = enforce_retention()

    assert dropped == 3
    assert partitions.existing_partition_days() == [moment.date() for moment in recent_days]
    assert sorted(ServiceDay.objects.values_list("day", flat=True)) == [
        moment.date() for moment in recent_days
    ]
    assert sorted(Span.objects.values_list("start_time", flat=True)) == recent_days


def test_it_keeps_the_partition_that_straddles_the_cutoff(db, two_weeks_retention):
    cutoff_day = (timezone.now() - timedelta(days=14)).date()
    first_second = datetime.combine(cutoff_day, time(0, 0, 1), tzinfo=UTC)
    day_before = first_second - timedelta(days=1)
    store_rows(rows_starting_at(day_before, first_second))

    assert enforce_retention() == 1

    # Some of that day's spans may still be inside retention.
    assert partitions.existing_partition_days() == [cutoff_day]
    assert Span.objects.get().start_time == first_second


def test_it_is_idempotent(db, two_weeks_retention):
    now = timezone.now()
    store_rows(rows_starting_at(now - timedelta(days=30), now))

    assert enforce_retention() == 1
    assert enforce_retention() == 0
    assert partitions.existing_partition_days() == [now.date()]


def test_ingest_recreates_a_partition_another_process_dropped(post_traces):
    assert post_traces(make_request([make_span(name="first")])).status_code == 200
    # Another process's retention run, unseen by this process's partition cache.
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partitions.partition_name(timezone.now().date())}")

    response = post_traces(make_request([make_span(name="second")]))

    assert response.status_code == 200
    assert list(Span.objects.values_list("name", flat=True)) == ["second"]
