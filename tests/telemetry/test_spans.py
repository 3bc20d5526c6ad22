"""telemetry.spans: the read interface other apps use, checked against hand counts."""

import os
from datetime import UTC, datetime, timedelta

import pytest

from telemetry import ingest, spans
from telemetry.otlp import SPAN_COLUMNS

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SERVER, CLIENT, CONSUMER = 2, 3, 5


def row(start, **fields) -> tuple:
    values = {
        "trace_id": os.urandom(16),
        "span_id": os.urandom(8),
        "parent_span_id": None,
        "service": "shop",
        "service_version": "1.0",
        "environment": "prod",
        "name": "GET /a",
        "kind": SERVER,
        "start_time": start,
        "duration_us": 10_000,
        "status_code": 0,
        "status_message": "",
        "http_route": "/a",
        "http_status": 200,
        "http_method": "GET",
        "is_error": False,
        "exception_type": "",
        "attributes": "{}",
        "resource_attributes": "{}",
        "events": "[]",
    }
    values.update(fields)
    return tuple(values[column] for column in SPAN_COLUMNS)


@pytest.fixture
def stored(db):
    """A small, hand-countable history of one service and its neighbours."""
    rows = [
        # 1.0 on /a: 4 requests, 1 error (ValueError), in minute 0.
        row(T0 + timedelta(seconds=1)),
        row(T0 + timedelta(seconds=2)),
        row(T0 + timedelta(seconds=3), duration_us=50_000),
        row(T0 + timedelta(seconds=4), is_error=True, exception_type="ValueError"),
        # 1.0 on /b in minute 1: a consumer span counts as a request; its error has
        # only a status message, which is its type.
        row(T0 + timedelta(minutes=1, seconds=5), kind=CONSUMER, http_route="/b", is_error=True,
            status_message="x" * 300),
        # 2.0 on /a in minute 1, no environment on its spans.
        row(T0 + timedelta(minutes=1, seconds=6), service_version="2.0", environment=""),
        # Not requests, or not this service, or another environment: never counted.
        row(T0 + timedelta(seconds=7), kind=CLIENT),
        row(T0 + timedelta(seconds=8), service="other"),
        row(T0 + timedelta(seconds=9), environment="staging"),
    ]  # fmt: skip
    ingest.store_rows(rows)
    return rows


def window(**fields) -> spans.RequestFilter:
    return spans.RequestFilter("shop", T0, T0 + timedelta(minutes=2), **fields)


def test_it_counts_requests_and_errors_per_route(stored):
    assert spans.route_counts(window(environment="prod")) == {"/a": (5, 1), "/b": (1, 1)}


def test_an_environment_filter_keeps_spans_that_name_none(stored):
    # 4 of 1.0 + 1 of 2.0 on /a (the 2.0 span has no environment); staging is left out.
    assert spans.route_counts(window(environment="prod", routes=("/a",))) == {"/a": (5, 1)}
    assert spans.route_counts(window(routes=("/a",))) == {"/a": (6, 1)}


def test_it_filters_by_version_or_by_every_other_version(stored):
    assert spans.route_counts(window(environment="prod", version="2.0")) == {"/a": (1, 0)}
    assert spans.route_counts(window(environment="prod", exclude_version="2.0")) == {
        "/a": (4, 1),
        "/b": (1, 1),
    }


def test_an_error_type_is_the_exception_else_the_first_200_characters(stored):
    assert spans.error_type_counts(window(environment="prod")) == {
        ("/a", "ValueError"): 1,
        ("/b", "x" * 200): 1,
    }
    assert spans.error_type("", "y" * 250) == "y" * 200


def test_latency_samples_are_milliseconds_per_route(stored):
    samples = spans.latency_samples_ms(
        window(environment="prod", version="1.0", routes=("/a",)), max_samples=1000
    )
    assert sorted(samples["/a"]) == [10.0, 10.0, 10.0, 50.0]


def test_it_counts_per_minute_and_tells_when_the_last_request_came(stored):
    assert spans.minute_counts(window(environment="prod")) == {
        T0: (4, 1),
        T0 + timedelta(minutes=1): (2, 1),
    }
    assert spans.presence(window(version="2.0")) == (1, T0 + timedelta(minutes=1, seconds=6))


def test_it_names_the_environment_a_version_serves_in(stored):
    assert spans.environment_of("shop", "1.0", T0, T0 + timedelta(minutes=1)) == "prod"
    assert spans.environment_of("shop", "2.0", T0, T0 + timedelta(minutes=2)) == ""


def test_it_lists_the_minutes_a_version_served(stored):
    assert spans.served_minutes("shop", "1.0", T0) == [T0, T0 + timedelta(minutes=1)]
    assert spans.first_start_after("shop", "2.0", T0) == T0 + timedelta(minutes=1, seconds=6)


def test_it_reads_trace_shapes_by_parent_links(db):
    trace_id = os.urandom(16)
    root_id, child_id = os.urandom(8), os.urandom(8)
    ingest.store_rows(
        [
            row(T0, trace_id=trace_id, span_id=root_id, duration_us=30_000),
            row(T0 + timedelta(milliseconds=1), trace_id=trace_id, span_id=child_id,
                parent_span_id=root_id, service="payments", kind=CLIENT, is_error=True),
        ]
    )  # fmt: skip
    roots = spans.sample_requests("shop", T0, T0 + timedelta(minutes=1), route="/a", limit=10)
    assert [(r.span_id, r.duration_us) for r in roots] == [(root_id, 30_000)]
    tree = spans.trace_spans([trace_id], T0, T0 + timedelta(minutes=1))
    by_id = {span.span_id: span for span in tree}
    assert by_id[child_id].parent_span_id == root_id
    assert by_id[child_id].service == "payments" and by_id[child_id].is_error


def test_an_slo_selection_counts_good_and_total_per_minute(stored):
    selection = spans.SpanSelection("shop", SERVER, "/a")
    availability = spans.good_total_per_minute(
        selection, spans.GoodRule(), start=T0, end=T0 + timedelta(minutes=2)
    )
    # Minute 0: 1.0's four (one error) and the staging one; minute 1: 2.0's one.
    assert availability == [(T0, 4, 5), (T0 + timedelta(minutes=1), 1, 1)]
    latency = spans.good_total_per_minute(
        selection, spans.GoodRule(max_duration_us=20_000), minutes=[T0]
    )
    assert latency == [(T0, 4, 5)]  # the 50 ms span is the bad one


def test_a_route_prefix_selects_every_route_below_it(stored):
    selection = spans.SpanSelection("shop", CONSUMER, "/*")
    assert (
        spans.bad_count(selection, spans.GoodRule(), start=T0, end=T0 + timedelta(minutes=2)) == 1
    )


def test_bad_count_of_one_version_needs_success_when_asked(stored):
    selection = spans.SpanSelection("shop", SERVER, "/a")
    strict = spans.GoodRule(max_duration_us=20_000, require_success=True)
    end = T0 + timedelta(minutes=2)
    # 1.0 on /a: the 50 ms span and the error (staging's 1.0 span is good).
    assert spans.bad_count(selection, strict, start=T0, end=end, version="1.0") == 2
    assert spans.bad_count(selection, strict, start=T0, end=end, version="2.0") == 0


def test_trace_search_pages_and_summarises(stored):
    search = spans.TraceSearch(T0, T0 + timedelta(minutes=2), service="shop", version="1.0")
    first = spans.search_trace_rows(search, limit=2)
    rest = spans.search_trace_rows(search, limit=10, offset=2)
    # 1.0 of shop: four on /a, the consumer on /b, the client and the staging one.
    assert len(first) + len(rest) == 7
    assert first[0][1] >= first[1][1] >= rest[0][1]
    summaries = spans.trace_summaries([bytes(first[0][0])], T0, T0 + timedelta(minutes=2))
    assert summaries[bytes(first[0][0])]["span_count"] == 1


def test_example_traces_are_the_newest_with_that_error_type(stored):
    ids = spans.example_trace_ids("shop", "1.0", "ValueError", since=T0, limit=3)
    assert ids == [stored[3][0]]


def test_sampled_requests_include_consumer_spans(stored):
    # A queue consumer's requests count wherever requests are counted, suspects included.
    roots = spans.sample_requests("shop", T0, T0 + timedelta(minutes=2), route="/b", limit=10)
    assert [root.span_id for root in roots] == [stored[4][1]]
