"""Where a request's errors and time went: the pure walk over trace spans, by hand."""

import pytest

from deployments import topology
from deployments.topology import TraceSpan

TRACE = b"t" * 16


def span(span_id: str, parent: str | None, service: str, ms: float, error=False, trace=TRACE):
    return TraceSpan(trace, span_id.encode(), parent.encode() if parent else None, service,
                     int(ms * 1000), error)  # fmt: skip


def test_time_is_charged_to_a_service_once_at_its_outermost_span():
    root = span("root", None, "frontend", 100, error=True)
    spans = [
        root,
        span("call", "root", "frontend", 80, error=True),  # frontend's own client span
        span("charge", "call", "payments", 70, error=True),
        span("query", "charge", "payments", 20),  # inside payments: not counted again
        span("stock", "root", "inventory", 10),
    ]
    result = topology.breakdown(spans, [root])
    assert (result.requests, result.errors, result.mean_ms()) == (1, 1, 100.0)
    assert dict(result.time_under_us) == {"payments": 70_000, "inventory": 10_000}
    # The errored request had an error below it in payments only.
    assert dict(result.errors_under) == {"payments": 1}


def test_spans_of_other_traces_are_not_walked():
    root = span("root", None, "frontend", 100)
    stranger = span("x", "root", "payments", 999, trace=b"u" * 16)
    result = topology.breakdown([root, stranger], [root])
    assert dict(result.time_under_us) == {}


def request(name: str, root_ms: float, children: dict[str, float], error_in: str = ""):
    root = span(name, None, "frontend", root_ms, error=bool(error_in))
    below = [span(f"{name}-{service}", name, service, ms, error=service == error_in)
             for service, ms in children.items()]  # fmt: skip
    return root, below


def breakdown_of(*requests):
    roots = [root for root, _ in requests]
    return topology.breakdown([s for root, below in requests for s in [root, *below]], roots)


def test_shares_split_the_extra_time_between_the_services_that_added_it():
    baseline = breakdown_of(
        request("a", 100, {"payments": 50}), request("b", 100, {"payments": 50})
    )
    # Mean 150 ms against 100: +50. payments' mean under rose 50 → 75 (+25), inventory's
    # 0 → 25 (+25); each explains half.
    regressed = breakdown_of(
        request("c", 200, {"payments": 100, "inventory": 50}), request("d", 100, {"payments": 50})
    )
    shares = topology.downstream_shares(regressed, baseline)
    assert shares == pytest.approx({"payments": 0.5, "inventory": 0.5})


def test_the_error_share_is_the_rise_in_errors_under_a_service_over_the_rise_in_errors():
    baseline = breakdown_of(
        request("a", 100, {"payments": 50}), request("b", 100, {"payments": 50})
    )
    # Error rate 0 → 1/2; every failed request failed in payments: payments explains it all.
    regressed = breakdown_of(
        request("c", 100, {"payments": 50}, error_in="payments"),
        request("d", 100, {"payments": 50}),
    )
    assert topology.downstream_shares(regressed, baseline) == {"payments": 1.0}


def test_nothing_is_explained_when_nothing_got_worse():
    same = breakdown_of(request("a", 100, {"payments": 50}))
    assert topology.downstream_shares(same, same) == {"payments": 0.0}
