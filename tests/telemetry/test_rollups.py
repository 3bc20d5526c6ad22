import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection, transaction

from telemetry import histogram, ingest, rollups
from telemetry.models import PendingMinute, RollupMinute
from telemetry.otlp import SPAN_COLUMNS
from tests.slo.factories import CLIENT, span_row, store_spans

MINUTE = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def _raw_counts() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT service, http_route, service_version, kind, date_trunc('minute', start_time),
                   count(*), count(*) FILTER (WHERE is_error)
            FROM telemetry_span GROUP BY 1, 2, 3, 4, 5
            """
        )
        return {row[:5]: (row[5], row[6]) for row in cursor.fetchall()}


def _rollup_counts() -> dict:
    return {
        (r.service, r.route, r.version, r.span_kind, r.minute): (r.requests, r.errors)
        for r in RollupMinute.objects.all()
    }


def _store_mixed_traffic():
    for offset in range(3):
        start = MINUTE + timedelta(minutes=offset, seconds=7)
        store_spans(start, 40, errors=offset)
        store_spans(start, 15, route="/api/cart", version="1.1.0", errors=2)
        store_spans(start, 5, service="payments", kind=CLIENT)


def test_rollup_totals_equal_a_direct_count_of_raw_spans():
    _store_mixed_traffic()

    assert rollups.rollup_pending() == 6

    assert _rollup_counts() == _raw_counts()
    assert len(_rollup_counts()) == 9
    assert not PendingMinute.objects.exists()
    for rollup in RollupMinute.objects.all():
        assert sum(rollup.latency_histogram) == rollup.requests


def test_it_counts_once_when_rolled_up_twice():
    _store_mixed_traffic()
    rollups.rollup_pending()
    first = _rollup_counts()
    every_minute = sorted({(key[0], key[4]) for key in first})

    rollups.recompute(every_minute)
    rollups.recompute(every_minute)
    rollups.rollup_pending()

    assert _rollup_counts() == first == _raw_counts()


def test_it_counts_a_retried_batch_once():
    rows = [span_row(MINUTE + timedelta(seconds=i)) for i in range(10)]
    ingest.store_rows(rows)
    rollups.rollup_pending()
    ingest.store_rows(rows)  # the exporter retried the same batch
    rollups.rollup_pending()

    assert _rollup_counts() == {("checkout", "/api/orders", "1.0.0", 2, MINUTE): (10, 0)}


def test_it_counts_late_spans_in_their_own_minute():
    store_spans(MINUTE + timedelta(seconds=5), 20)
    rollups.rollup_pending()

    # An exporter retrying for an hour delivers spans of the same minute, and of an
    # older one, after that minute was rolled up.
    store_spans(MINUTE + timedelta(seconds=50), 7, errors=3)
    store_spans(MINUTE - timedelta(hours=26), 4, errors=1)
    assert rollups.rollup_pending() == 2

    counts = _rollup_counts()
    assert counts[("checkout", "/api/orders", "1.0.0", 2, MINUTE)] == (27, 3)
    assert counts[("checkout", "/api/orders", "1.0.0", 2, MINUTE - timedelta(hours=26))] == (4, 1)
    assert counts == _raw_counts()


def test_it_tells_downstream_apps_which_minutes_changed():
    received = []

    def receiver(sender, service, minutes, **kwargs):
        received.append((service, minutes))

    rollups.minutes_recomputed.connect(receiver)
    try:
        store_spans(MINUTE, 3)
        store_spans(MINUTE + timedelta(minutes=2), 3)
        rollups.rollup_pending()
    finally:
        rollups.minutes_recomputed.disconnect(receiver)

    assert received == [("checkout", [MINUTE, MINUTE + timedelta(minutes=2)])]


def test_sql_and_python_agree_on_buckets():
    durations = [0, 99, 100, 125, 126, 999, 1000, 1_000_000, 99_999_999, 100_000_000, 10**10]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT width_bucket(d, %s::bigint[]) FROM unnest(%s::bigint[]) AS d",
            [list(histogram.LOWER_BOUNDS_US), durations],
        )
        from_sql = [row[0] for row in cursor.fetchall()]

    assert from_sql == [histogram.bucket_index(d) for d in durations]
    assert from_sql[0] == 0 and from_sql[-1] == histogram.BUCKET_COUNT - 1


def test_histogram_percentiles_are_close_enough_for_charts():
    durations = [1_000 * (i + 1) for i in range(1_000)]  # 1 ms .. 1000 ms
    buckets = histogram.empty()
    for duration in durations:
        buckets[histogram.bucket_index(duration)] += 1

    for quantile, exact_us in [(0.5, 500_000), (0.95, 950_000), (0.99, 990_000)]:
        assert histogram.percentile_us(buckets, quantile) == pytest.approx(exact_us, rel=0.13)
    assert histogram.percentile_us(histogram.empty(), 0.5) is None


def test_latency_series_marks_recent_minutes_provisional(settings):
    settings.MONOENV_ROLLUP_LATENESS_MINUTES = 15
    store_spans(MINUTE, 100, duration_us=20_000, errors=1)
    store_spans(MINUTE + timedelta(minutes=10), 10, duration_us=5_000)
    rollups.rollup_pending()

    points = rollups.latency_series(
        "checkout",
        start=MINUTE,
        end=MINUTE + timedelta(hours=1),
        now=MINUTE + timedelta(minutes=20),
    )

    assert [(p.minute, p.requests, p.errors, p.complete) for p in points] == [
        (MINUTE, 100, 1, True),
        (MINUTE + timedelta(minutes=10), 10, 0, False),
    ]
    assert points[0].p50_ms == pytest.approx(20, rel=0.13)


def test_it_prunes_rollups_past_their_retention(settings):
    settings.MONOENV_ROLLUP_RETENTION_DAYS = 1
    store_spans(MINUTE, 2)
    store_spans(MINUTE - timedelta(days=2), 2)
    rollups.rollup_pending()

    assert rollups.prune_rollups(now=MINUTE) == 1
    assert list(RollupMinute.objects.values_list("minute", flat=True)) == [MINUTE]


def _other_connection() -> psycopg.Connection:
    # Django's own parameters, so an embedded server's socket is found too.
    return psycopg.connect(**connection.get_connection_params())


@pytest.mark.django_db(transaction=True)
def test_it_leaves_a_minute_whose_batch_is_still_committing_for_the_next_run():
    store_spans(MINUTE, 5)
    # A second batch for the same minute has written its spans and marked the
    # minute, exactly as ingest does, but commits only while the rollup runs.
    other = _other_connection()
    try:
        with other.cursor().copy(
            f"COPY telemetry_span ({', '.join(SPAN_COLUMNS)}) FROM STDIN"
        ) as copy:
            for index in range(3):
                copy.write_row(span_row(MINUTE + timedelta(seconds=30 + index)))
        other.execute(ingest.MARK_PENDING_SQL, [["checkout"], [MINUTE]])
        committer = threading.Timer(0.5, other.commit)
        committer.start()
        rollups.rollup_pending()
        committer.join()
    finally:
        other.close()

    assert PendingMinute.objects.filter(service="checkout", minute=MINUTE).exists()
    rollups.rollup_pending()
    assert _rollup_counts() == {("checkout", "/api/orders", "1.0.0", 2, MINUTE): (8, 0)}
    assert not PendingMinute.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ingest_never_waits_for_a_rollup_in_progress():
    store_spans(MINUTE, 5)
    other = _other_connection()
    try:
        with transaction.atomic():
            # The rollup's work up to, not including, forgetting the rows.
            assert rollups._take_rollup_lock()
            pending = rollups._pending_batch(0, 10**9, 500)
            rollups.recompute([(service, minute) for _, service, minute, _ in pending])
            # Meanwhile a batch marks the same minute; it must not block.
            other.execute("SET lock_timeout = '1s'")
            other.execute(ingest.MARK_PENDING_SQL, [["checkout"], [MINUTE]])
            other.commit()
            rollups._forget_unchanged(pending)
    finally:
        other.close()

    assert PendingMinute.objects.get(service="checkout", minute=MINUTE).marks == 2
