"""Retried and duplicated spans are stored and counted once."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from telemetry import otlp
from telemetry.ingest import current_limits, store_rows
from telemetry.models import PendingMinute, ServiceDay, Span
from tests.telemetry.otlp_payloads import make_request, make_span


def minute_of(moment):
    return moment.replace(second=0, microsecond=0)


def stored_ids() -> list[tuple[bytes, bytes]]:
    return sorted(
        (bytes(trace), bytes(span))
        for trace, span in Span.objects.values_list("trace_id", "span_id")
    )


def test_it_stores_a_retried_batch_once(post_traces):
    request = make_request([make_span(), make_span(), make_span()])

    assert post_traces(request).status_code == 200
    response = post_traces(request)

    assert response.status_code == 200
    assert len(stored_ids()) == 3
    assert ServiceDay.objects.get().span_count == 3


def test_it_stores_a_duplicate_inside_one_batch_once(post_traces):
    span = make_span()

    response = post_traces(make_request([span, make_span(), span]))

    assert response.status_code == 200
    assert len(stored_ids()) == 2
    assert ServiceDay.objects.get().span_count == 2


def test_it_counts_only_the_new_spans_of_a_partly_seen_batch(post_traces):
    seen = make_span(name="seen")
    post_traces(make_request([seen]))

    post_traces(make_request([seen, make_span(name="new")]))

    assert sorted(Span.objects.values_list("name", flat=True)) == ["new", "seen"]
    assert ServiceDay.objects.get().span_count == 2


def test_it_counts_spans_per_service_version_and_day(post_traces):
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    post_traces(
        make_request(
            [make_span(start=now), make_span(start=yesterday), make_span(start=now)],
            resource={"service.name": "cart", "service.version": "3.1"},
        )
    )
    post_traces(make_request([make_span(start=now)], resource={"service.name": "cart"}))

    days = {
        (row.service_version, row.day): (row.span_count, row.first_seen, row.last_seen)
        for row in ServiceDay.objects.all()
    }
    assert days == {
        ("3.1", now.date()): (2, now, now),
        ("3.1", yesterday.date()): (1, yesterday, yesterday),
        ("", now.date()): (1, now, now),
    }


def test_it_marks_each_touched_minute_pending_once(post_traces):
    now = timezone.now()
    earlier = now - timedelta(minutes=3)
    late = now - timedelta(hours=5)
    request = make_request(
        [make_span(start=now), make_span(start=now), make_span(start=earlier)],
        resource={"service.name": "cart"},
    )
    post_traces(request)
    post_traces(request)
    post_traces(make_request([make_span(start=late)], resource={"service.name": "search"}))

    pending = sorted(PendingMinute.objects.values_list("service", "minute"))
    assert pending == sorted(
        [("cart", minute_of(now)), ("cart", minute_of(earlier)), ("search", minute_of(late))]
    )


def test_it_stores_a_batch_retried_within_one_transaction_once(db):
    rows = otlp.spans_to_rows(make_request([make_span(), make_span()]), current_limits()).rows

    with transaction.atomic():
        stored = [store_rows(rows) for _ in range(3)]

    assert stored == [2, 0, 0]
    assert len(stored_ids()) == 2
    assert ServiceDay.objects.get().span_count == 2
