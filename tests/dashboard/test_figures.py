"""The rules behind every figure (dashboard/figures.py) and the verdict headline, without Django."""

from datetime import UTC, datetime, timedelta

from dashboard import figures, headline
from telemetry import coarse_rollups

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_the_origin_is_the_one_telemetry_bins_on():
    assert figures.ORIGIN == coarse_rollups.ORIGIN


def test_a_range_ends_at_the_last_bucket_that_ended_two_minutes_ago():
    now = T0 + timedelta(minutes=7, seconds=30)
    assert figures.RANGES["1h"].bounds(now) == (T0 + 5 * MIN - timedelta(hours=1), T0 + 5 * MIN)
    # At 10:06:30 the bucket [10:00, 10:05) ended only 90 s ago: it is not shown yet.
    assert figures.RANGES["6h"].bounds(T0 + timedelta(minutes=6, seconds=30))[1] == T0
    assert figures.RANGES["6h"].bounds(T0 + timedelta(minutes=7))[1] == T0 + 5 * MIN


def test_a_rate_counts_only_the_time_the_service_served():
    start, end = T0, T0 + timedelta(hours=1)
    # Started five minutes before the end, still serving: 300 s, not 3600 s.
    assert figures.served_seconds([(end - 5 * MIN, end + MIN)], start, end) == 300
    assert figures.rate(4_800, 300) == 16.0
    # Stopped half-way: only the first half counts.
    assert figures.served_seconds([(start - MIN, start + 30 * MIN)], start, end) == 1800
    # Never served in the range, or never seen.
    assert figures.served_seconds([(end + MIN, end + 2 * MIN)], start, end) == 0
    assert figures.served_seconds([], start, end) == 0
    assert figures.rate(10, 0) is None


def test_a_service_serves_while_any_of_its_versions_does():
    start, end = T0, T0 + timedelta(hours=1)
    # An old version gone hours before the range, then two overlapping versions:
    # [10:20, 10:40) and [10:30, 11:00) served 40 minutes, not 60.
    intervals = [
        (T0 - timedelta(hours=5), T0 - timedelta(hours=4)),
        (T0 + 20 * MIN, T0 + 40 * MIN),
        (T0 + 30 * MIN, end + 5 * MIN),
    ]
    assert figures.served_seconds(intervals, start, end) == 40 * 60
    # A gap between two versions does not count: [10:00, 10:10) and [10:50, 11:00).
    gap = [(T0 - MIN, T0 + 10 * MIN), (T0 + 50 * MIN, end + MIN)]
    assert figures.served_seconds(gap, start, end) == 20 * 60


def test_the_default_range_is_the_shortest_that_holds_the_data_up_to_six_hours():
    assert figures.fitting_range(timedelta(minutes=5)) == "15m"
    assert figures.fitting_range(timedelta(minutes=50)) == "1h"
    assert figures.fitting_range(timedelta(hours=3)) == "6h"
    assert figures.fitting_range(timedelta(days=9)) == "6h"
    assert figures.fitting_range(None) == "6h"


def _finding(metric, route, base, cand, n, **extra):
    return {
        "metric": metric, "route": route, "baseline": base, "candidate": cand, "candidate_n": n,
        "significant": True, "direction": "up", "detail": "", **extra,
    }  # fmt: skip


def test_the_headline_leads_with_the_routes_errors_in_plain_units():
    findings = [
        _finding("latency_p95", "(whole service)", 120.0, 310.0, 6_000),
        _finding("latency_p99", "(whole service)", 200.0, 900.0, 6_000),
        _finding("error_rate", "(whole service)", 0.5, 2.0, 6_000),
        _finding("error_rate", "/checkout", 0.36, 6.0, 6_000),
        _finding("latency_p50", "/home", 10.0, 11.0, 9_000, significant=False),
    ]
    told = headline.headline(findings)
    # (6.00 - 0.36) % of 6,000 requests = 338.4 more failures.
    assert told[0] == (
        "Errors on /checkout rose from 0.36 % to 6.00 % (+5.64 pp): "
        "about 338 more of 6,000 requests failed."
    )
    # The route's own error finding replaces the whole service's; no p-values anywhere.
    assert not any("Errors on the whole service" in line for line in told)
    assert told[1] == (
        "p95 latency on the whole service rose from 120 ms to 310 ms (+190 ms) "
        "across 6,000 requests."
    )
    assert all("p=" not in line and "p =" not in line for line in told)


def test_the_headline_counts_what_it_leaves_for_the_table():
    findings = [_finding("error_rate", f"/r{i}", 1.0, 5.0, 1_000) for i in range(5)]
    told = headline.headline(findings)
    assert len(told) == 4 and told[-1] == "And 2 more findings below."


def test_a_new_error_type_is_told_with_its_requests():
    told = headline.headline(
        [_finding("new_error_type", "(whole service)", 0, 40, 150, detail="KeyError")]
    )
    assert told == ["New error KeyError on the whole service: 40 requests."]
