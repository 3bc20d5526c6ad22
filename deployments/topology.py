"""Where a request's errors and time went, by the services under it in its trace.

Pure code: spans in, per-service shares out. Used to rank the deploys that
could explain a regression (deployments/suspects.py). Any span with the fields
of TraceSpan will do; telemetry.spans.TraceSpan, what the span reads return,
has the same shape (this module may not import it: it would bring Django).

Invariants: a service's time is charged once per request, at its outermost
spans under the root; an errored request counts against each service with an
error below it; a share is clamped to 0..1.
"""

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TraceSpan:
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service: str
    duration_us: int
    is_error: bool


@dataclass
class Breakdown:
    """Requests of one route, and what their downstream services contributed."""

    requests: int = 0
    errors: int = 0
    duration_us: int = 0
    # Errored requests with an error below them in each service.
    errors_under: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Time spent in each service's spans below the requests (its outermost spans).
    time_under_us: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def mean_ms(self) -> float:
        return self.duration_us / self.requests / 1000 if self.requests else 0.0

    def error_rate_under(self, service: str) -> float:
        return self.errors_under.get(service, 0) / self.requests if self.requests else 0.0

    def mean_ms_under(self, service: str) -> float:
        if not self.requests:
            return 0.0
        return self.time_under_us.get(service, 0) / self.requests / 1000


def breakdown(spans: list[TraceSpan], roots: list[TraceSpan]) -> Breakdown:
    """Walk each root's subtree and charge its errors and time to services."""
    children: dict[tuple[bytes, bytes], list[TraceSpan]] = defaultdict(list)
    for span in spans:
        if span.parent_span_id:
            children[(span.trace_id, span.parent_span_id)].append(span)
    result = Breakdown()
    for root in roots:
        result.requests += 1
        result.duration_us += root.duration_us
        result.errors += root.is_error
        erring_services: set[str] = set()
        for span, parent_service in _descendants(root, children):
            if span.service == root.service:
                continue
            if span.service != parent_service:
                result.time_under_us[span.service] += span.duration_us
            if span.is_error:
                erring_services.add(span.service)
        if root.is_error:
            for service in erring_services:
                result.errors_under[service] += 1
    return result


def _descendants(root: TraceSpan, children):
    stack = [(child, root.service) for child in children.get((root.trace_id, root.span_id), [])]
    seen = set()
    while stack:
        span, parent_service = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        yield span, parent_service
        stack.extend(
            (child, span.service) for child in children.get((span.trace_id, span.span_id), [])
        )


# The metrics a share can be taken in; '' takes the larger of the two.
ERRORS, LATENCY = "errors", "latency"


def downstream_shares(regressed: Breakdown, baseline: Breakdown, *,
                      metric: str = "") -> dict[str, float]:  # fmt: skip
    """The share (0..1) of the regression that each downstream service explains.

    The share is the service's rise in errors (metric='errors') or time
    ('latency') under the route, divided by the route's own rise; without a
    metric, the larger of the two counts. A share chained with another one
    (a flag cohort's share of that service's extra time) must name its metric.
    """
    if metric not in ("", ERRORS, LATENCY):
        raise ValueError(f"unknown metric {metric!r}")
    extra_errors = regressed.error_rate() - baseline.error_rate()
    extra_ms = regressed.mean_ms() - baseline.mean_ms()
    services = set(regressed.errors_under) | set(regressed.time_under_us)
    shares = {}
    for service in services:
        error_share = time_share = 0.0
        if extra_errors > 0 and metric != LATENCY:
            rise = regressed.error_rate_under(service) - baseline.error_rate_under(service)
            error_share = rise / extra_errors
        if extra_ms > 0 and metric != ERRORS:
            rise = regressed.mean_ms_under(service) - baseline.mean_ms_under(service)
            time_share = rise / extra_ms
        shares[service] = min(1.0, max(0.0, error_share, time_share))
    return shares
