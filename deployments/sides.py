"""Reading one side of a comparison from spans, through telemetry/spans.py.

A side is what deployments/judge.py compares: requests and errors per route,
errors per route and type, and latencies (every one, or a repeatable sample by
span id when there are very many). Both sides of a comparison are read with
the same rules, so their counts cover the same population.
"""

from datetime import datetime, timedelta

import numpy as np

from deployments.judge import Side
from telemetry import spans

ONE_MINUTE = timedelta(minutes=1)


def read_side(span_filter: spans.RequestFilter, *, max_samples: int) -> Side:
    counts = spans.route_counts(span_filter)
    latencies = spans.latency_samples_ms(span_filter, max_samples=max_samples)
    return Side(
        requests={route: n for route, (n, _) in counts.items()},
        errors={route: e for route, (_, e) in counts.items()},
        error_types=spans.error_type_counts(span_filter),
        latencies_ms={route: np.asarray(values) for route, values in latencies.items()},
    )


def minute_series(span_filter: spans.RequestFilter) -> list[tuple[int, int]]:
    """(requests, errors) of every whole minute within the filter's range, quiet ones as zeros.

    Partial minutes at either end are left out: a half minute is not a dip.
    """
    counts = spans.minute_counts(span_filter)
    minute = spans.minute_floor(span_filter.start)
    if minute < span_filter.start:
        minute += ONE_MINUTE
    series = []
    while minute + ONE_MINUTE <= span_filter.end:
        series.append(counts.get(minute, (0, 0)))
        minute += ONE_MINUTE
    return series


def still_serving(span_filter: spans.RequestFilter, *, at_least: int, since: datetime) -> bool:
    """Whether the filter has `at_least` requests and one started at or after `since`."""
    count, last = spans.presence(span_filter)
    return count >= at_least and last is not None and last >= since


def served(span_filter: spans.RequestFilter) -> int:
    return spans.presence(span_filter)[0]

