"""The route watch: regressions that no own deploy explains.

Deploy analysis compares a version with the one before it, so a route that
gets worse while its own service does not change (a downstream deploy, a
dependency) would go unnoticed. Every few minutes the watch compares each busy
route's last MONOENV_ROUTE_WATCH_MINUTES with the
MONOENV_ROUTE_WATCH_BASELINE_MINUTES before them, on error rate and p95
latency, with the tests and thresholds of deploy analysis and Holm's
correction across the service's routes.

Looking every few minutes for ever, the watch spends a fixed alpha per look:
FALSE_SHIFTS_PER_30_DAYS divided by the looks in 30 days. By the union bound
a service with stationary traffic then opens at most that many false shifts
in 30 days on average, however correlated the overlapping windows are.

The per-minute rollups screen the routes cheaply; only a route whose rollup
totals rise beyond a practical threshold is tested exactly, on raw spans.
Comparisons screened out still count in the Holm family (with p = 1), so
screening does not make the rest look more significant.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from deployments import analysis, judge, sides, stats, suspects
from deployments.models import Deployment, RouteShift
from notifications import outbox
from notifications.message import Message
from telemetry import histogram, rollups, spans

logger = logging.getLogger(__name__)

ERROR_RATE, LATENCY_P95 = "error_rate", "latency_p95"
METRICS = (ERROR_RATE, LATENCY_P95)
# Histogram buckets are a tenth of a decade wide, so a p95 read from them can be
# off by about half a bucket: latency is screened with that much slack.
HISTOGRAM_SLACK = 10**0.05
DUE_CACHE_KEY = "deployments:route-watch"
# The expected number of false shifts one service may open in 30 days of stationary traffic.
FALSE_SHIFTS_PER_30_DAYS = 0.5


def look_alpha(*, every_minutes: int, confidence: float) -> float:
    """The alpha one look of the watch may spend on one service's family of routes."""
    looks_in_30_days = 30 * 24 * 60 / every_minutes
    return min(1 - confidence, FALSE_SHIFTS_PER_30_DAYS / looks_in_30_days)


def _rules() -> judge.Rules:
    alpha = look_alpha(
        every_minutes=settings.MONOENV_ROUTE_WATCH_EVERY_MINUTES,
        confidence=settings.MONOENV_DEPLOY_CONFIDENCE,
    )
    return judge.Rules(
        thresholds=analysis.thresholds(),
        fail_alpha=alpha,
        pass_alpha=alpha,
        min_route_requests=settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS,
    )


@dataclass
class RouteTotals:
    """One route's rollups summed over one window."""

    requests: int = 0
    errors: int = 0
    latency_histogram: list[int] = field(default_factory=histogram.empty)

    def add(self, requests: int, errors: int, minute_histogram: list[int]) -> None:
        self.requests += requests
        self.errors += errors
        self.latency_histogram = histogram.merge([self.latency_histogram, minute_histogram])

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p95_ms(self) -> float:
        return (histogram.percentile_us(self.latency_histogram, 0.95) or 0.0) / 1000


@dataclass(frozen=True)
class Windows:
    baseline_start: datetime
    start: datetime
    end: datetime

    @classmethod
    def ending(cls, now: datetime) -> "Windows":
        """Whole minutes, ending a little before now so late spans have arrived."""
        lag = timedelta(seconds=settings.MONOENV_DEPLOY_EVALUATION_LAG_SECONDS)
        end = (now - lag).replace(second=0, microsecond=0)
        start = end - timedelta(minutes=settings.MONOENV_ROUTE_WATCH_MINUTES)
        baseline = timedelta(minutes=settings.MONOENV_ROUTE_WATCH_BASELINE_MINUTES)
        return cls(start - baseline, start, end)

    def regression(self, service: str, route: str) -> suspects.Regression:
        return suspects.Regression(
            service=service,
            route=route,
            start=self.start,
            end=self.end,
            baseline_start=self.baseline_start,
        )


def watch_if_due(*, now: datetime) -> int:
    """Run the watch at most every MONOENV_ROUTE_WATCH_EVERY_MINUTES; new shifts found."""
    every = timedelta(minutes=settings.MONOENV_ROUTE_WATCH_EVERY_MINUTES)
    # A little under the interval, so a beat tick that comes early still runs it.
    timeout = max(1.0, every.total_seconds() - 30)
    if not cache.add(DUE_CACHE_KEY, now.isoformat(), timeout=timeout):
        return 0
    return watch(now=now)["opened"]


def watch(*, now: datetime | None = None) -> dict:
    """Resolve the shifts that recovered, then open one for each new regression."""
    now = now or timezone.now()
    windows = Windows.ending(now)
    resolved = resolve_recovered(windows, now=now)
    totals = _rollup_totals(windows)
    opened = []
    for service in sorted(totals):
        opened += _watch_service(service, totals[service], windows, now=now)
    return {"opened": len(opened), "resolved": resolved}


def _rollup_totals(windows: Windows) -> dict[str, dict[str, tuple[RouteTotals, RouteTotals]]]:
    """service → route → (baseline, recent) totals of the request spans."""
    rows = rollups.request_minutes(start=windows.baseline_start, end=windows.end)
    totals: dict = defaultdict(lambda: defaultdict(lambda: (RouteTotals(), RouteTotals())))
    for service, route, minute, requests, errors, minute_histogram in rows:
        side = 1 if minute >= windows.start else 0
        totals[service][route][side].add(requests, errors, minute_histogram)
    return totals


def _watch_service(service: str, routes: dict, windows: Windows, *, now: datetime) -> list:
    minimum = settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS
    busy = {
        route: sides
        for route, sides in routes.items()
        if min(sides[0].requests, sides[1].requests) >= minimum
    }
    screened = sorted(route for route, (base, recent) in busy.items() if _rose(base, recent))
    if not screened or _deployed_recently(service, windows):
        return []
    findings = _exact_findings(service, screened, windows)
    _adjust(findings, family=len(METRICS) * len(busy))
    already_open = set(
        RouteShift.objects.open().filter(service=service).values_list("route", "metric")
    )
    opened = []
    for finding in findings:
        if finding.significant and (finding.route, finding.metric) not in already_open:
            shift = _open_shift(service, finding, windows, now=now)
            opened += [shift] if shift else []
    return opened


def _rose(baseline: RouteTotals, recent: RouteTotals) -> bool:
    """Whether the rollups show a rise worth an exact test."""
    limits = analysis.thresholds()
    if stats.error_rate_exceeds(baseline.error_rate(), recent.error_rate(), limits):
        return True
    return stats.latency_exceeds(baseline.p95_ms(), recent.p95_ms() * HISTOGRAM_SLACK, limits)


def _deployed_recently(service: str, windows: Windows) -> bool:
    """An own deploy in the suspect lookback: its analysis owns the regression."""
    since = windows.start - timedelta(minutes=settings.MONOENV_DEPLOY_SUSPECT_LOOKBACK_MINUTES)
    in_range = Q(started_at__gte=since, started_at__lte=windows.end) | Q(
        first_span_at__gte=since, first_span_at__lte=windows.end
    )
    return Deployment.objects.filter(in_range, service=service).exists()


def _read(service: str, routes, start: datetime, end: datetime) -> judge.Side:
    span_filter = spans.RequestFilter(service, start, end, routes=tuple(sorted(routes)))
    return sides.read_side(span_filter, max_samples=settings.MONOENV_DEPLOY_MAX_SAMPLES)


def _exact_findings(service: str, routes: list[str], windows: Windows) -> list:
    baseline = _read(service, routes, windows.baseline_start, windows.start)
    recent = _read(service, routes, windows.start, windows.end)
    rules = _rules()
    findings = []
    for route in routes:
        if route not in baseline.routes() or route not in recent.routes():
            continue
        findings.append(judge.error_rate_finding(route, baseline, recent, [route], rules))
        findings += [
            finding
            for finding in judge.latency_findings(route, baseline, recent, [route], rules)
            if finding.metric == LATENCY_P95
        ]
    return findings


def _adjust(findings: list, *, family: int) -> None:
    """Holm across every busy route's comparisons, tested or screened out."""
    judge.adjust(findings, alpha=_rules().fail_alpha, family=family)


def _open_shift(service: str, finding, windows: Windows, *, now: datetime) -> RouteShift | None:
    try:
        with transaction.atomic():
            shift = RouteShift.objects.create(
                service=service,
                route=finding.route,
                metric=finding.metric,
                baseline_value=finding.baseline_value,
                current_value=finding.candidate_value,
                baseline_n=finding.baseline_n,
                current_n=finding.candidate_n,
                p_value=finding.p_value,
                adjusted_p_value=finding.adjusted_p_value,
                threshold=finding.threshold,
                window_start=windows.start,
                window_end=windows.end,
                detected_at=now,
                last_seen_at=now,
            )
    except IntegrityError:
        return None  # another watcher opened it first
    with transaction.atomic():
        suspects.record_for_shift(shift, windows.regression(service, finding.route))
        outbox.queue(shift_message(shift), now=now)
    logger.info("route shift: %s", describe(shift))
    return shift


def shift_message(shift: RouteShift) -> Message:
    """The route-shift notification: what rose where, and the change most likely behind it."""
    summary = f"[ROUTE SHIFT] {describe(shift)}."
    top = shift.suspects.select_related("suspect").first()
    if top is not None and top.score > 0:
        summary += f" Top suspect: {top.label()}. {top.evidence}"
    return Message(
        event="route_shift",
        # A shift is a ticket: a burning budget pages through its SLO's own alert.
        severity="ticket",
        summary=summary,
        link=shift.link(),
        link_text=f"{shift.service} {shift.route}",
        subject=f"deployments.routeshift:{shift.pk}",
        details={
            "shift": {
                "id": shift.pk,
                "service": shift.service,
                "route": shift.route,
                "metric": shift.metric,
                "baseline_value": shift.baseline_value,
                "current_value": shift.current_value,
                "adjusted_p_value": shift.adjusted_p_value,
                "window_start": shift.window_start.isoformat(),
                "window_end": shift.window_end.isoformat(),
            },
            "top_suspect": _suspect_details(top) if top is not None and top.score > 0 else None,
        },
    )  # fmt: skip


def _suspect_details(top) -> dict:
    """A deploy by service and version; a flag change by its kind, id and label."""
    if top.is_deploy:
        return {"kind": "deploy", "service": top.suspect.service,
                "version": top.suspect.version, "evidence": top.evidence}  # fmt: skip
    return {"kind": top.suspect_kind, "id": top.suspect_change_id, "label": top.suspect_label,
            "link": top.suspect_link, "evidence": top.evidence}  # fmt: skip


def resolve_recovered(windows: Windows, *, now: datetime) -> int:
    """Close the open shifts whose route is back within the thresholds of before.

    The shift's own baseline is the reference: after an hour the watch's
    rolling baseline has absorbed a lasting regression, which has not recovered.
    """
    by_service = defaultdict(list)
    for shift in RouteShift.objects.open():
        by_service[shift.service].append(shift)
    resolved = 0
    for service, shifts in by_service.items():
        recent = _read(service, {shift.route for shift in shifts}, windows.start, windows.end)
        for shift in shifts:
            resolved += _update(shift, recent, windows, now=now)
    return resolved


def _update(shift: RouteShift, recent: judge.Side, windows: Windows, *, now) -> bool:
    """Record the latest value; resolve the shift if it recovered. True if resolved."""
    requests = recent.requests.get(shift.route, 0)
    if requests and requests < settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS:
        return False  # too few requests to tell; a route gone quiet has recovered
    limits = analysis.thresholds()
    if shift.metric == ERROR_RATE:
        current = recent.errors.get(shift.route, 0) / requests if requests else 0.0
        still = stats.error_rate_exceeds(shift.baseline_value, current, limits)
    else:
        latencies = recent.latencies(shift.route)
        current = float(np.quantile(latencies, 0.95)) if len(latencies) else 0.0
        still = stats.latency_exceeds(shift.baseline_value, current, limits)
    shift.current_value, shift.current_n = current, requests
    shift.window_start, shift.window_end = windows.start, windows.end
    shift.last_seen_at = now
    shift.resolved_at = None if still and requests else now
    shift.save(
        update_fields=[
            "current_value", "current_n", "window_start", "window_end", "last_seen_at",
            "resolved_at",
        ]
    )  # fmt: skip
    return shift.resolved_at is not None


def describe(shift: RouteShift) -> str:
    """One sentence about a shift, for logs and banners."""
    if shift.metric == ERROR_RATE:
        change = f"error rate rose from {shift.baseline_value:.2%} to {shift.current_value:.2%}"
    else:
        change = (
            f"p95 latency rose from {shift.baseline_value:.1f} ms to {shift.current_value:.1f} ms"
        )
    return f"{shift.service} {shift.route}: {change} with no deploy of {shift.service}"
