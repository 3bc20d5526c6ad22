"""Automatic regression analysis of a deploy: baseline against candidate.

The candidate is the new version's server spans from the deploy to the
checkpoint. The baseline is the previous version over the same range when
both versions serve at once (a canary or a rolling deploy); otherwise the same
routes in a window before the deploy. Raw spans are read, so counts are exact;
latencies are sampled (by span id, so repeatably) only when there are very
many. deployments/stats.py holds the statistics.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection

from deployments import stats
from deployments.models import Deployment, Verdict
from telemetry.models import SpanKind

SERVICE = ""  # the route of a finding about the whole service
REQUEST_KINDS = [SpanKind.SERVER, SpanKind.CONSUMER]
QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
# Fewest occurrences of an error type unseen before that can fail a deploy.
NEW_ERROR_TYPE_MIN_COUNT = 5
# A minute of the rollout "falls towards zero" below this share of the usual traffic.
THROUGHPUT_DROP_RATIO = 0.5
ROLLOUT_MIN_MINUTES = 2
ROLLOUT_MAX_MINUTES = 15


@dataclass
class Side:
    """One side of the comparison: counts per route, latencies, error types."""

    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)
    latencies_ms: dict[str, np.ndarray] = field(default_factory=dict)

    def total(self, routes) -> tuple[int, int]:
        return (
            sum(self.requests.get(r, 0) for r in routes),
            sum(self.errors.get(r, 0) for r in routes),
        )

    def latencies_for(self, routes) -> np.ndarray:
        arrays = [self.latencies_ms[r] for r in routes if r in self.latencies_ms]
        return np.concatenate(arrays) if arrays else np.array([])


@dataclass
class FindingResult:
    metric: str
    route: str
    baseline_value: float | None
    candidate_value: float | None
    baseline_n: int
    candidate_n: int
    threshold: str
    effect_size: float | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    interval_low: float | None = None
    interval_high: float | None = None
    practical: bool = False
    significant: bool = False
    direction: str = ""
    detail: str = ""


@dataclass
class Evaluation:
    checkpoint: int
    verdict: str
    reason: str
    baseline_kind: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    baseline_requests: int = 0
    candidate_requests: int = 0
    more_requests_needed: int | None = None
    findings: list[FindingResult] = field(default_factory=list)


@dataclass(frozen=True)
class SpanFilter:
    service: str
    environment: str | None  # None: every environment
    start: datetime
    end: datetime
    version: str | None  # None: every version
    same_version: bool = True
    routes: tuple[str, ...] = ()  # empty: every route

    def where(self) -> tuple[str, list]:
        sql = "service = %s AND kind = ANY(%s) AND start_time >= %s AND start_time < %s"
        params = [self.service, [int(k) for k in REQUEST_KINDS], self.start, self.end]
        if self.environment is not None:
            sql += " AND environment = ANY(%s)"
            params.append([self.environment, ""])
        if self.version is not None:
            version_op = "=" if self.same_version else "<>"
            sql += f" AND service_version {version_op} %s"
            params.append(self.version)
        if self.routes:
            sql += " AND http_route = ANY(%s)"
            params.append(list(self.routes))
        return sql, params


def thresholds() -> stats.Thresholds:
    return stats.Thresholds(
        error_rate_min_pp=settings.MONOENV_DEPLOY_ERROR_RATE_MIN_PP,
        error_rate_min_ratio=settings.MONOENV_DEPLOY_ERROR_RATE_MIN_RATIO,
        latency_min_ratio=settings.MONOENV_DEPLOY_LATENCY_MIN_RATIO,
        latency_min_ms=settings.MONOENV_DEPLOY_LATENCY_MIN_MS,
    )


def evaluate(deployment: Deployment, checkpoint: int) -> Evaluation:
    """Compare the deploy's version with its baseline, up to `checkpoint` minutes."""
    start = deployment.deployed_at
    end = deployment.checkpoint_time(checkpoint)
    candidate_filter = SpanFilter(
        deployment.service, deployment.environment, start, end, deployment.version, True
    )
    baseline_filter, baseline_kind = choose_baseline(deployment, start, end)
    candidate = read_side(candidate_filter)
    baseline = read_side(baseline_filter)
    evaluation = Evaluation(
        checkpoint=checkpoint,
        verdict=Verdict.INCONCLUSIVE,
        reason="",
        baseline_kind=baseline_kind,
        window_start=start,
        window_end=end,
    )
    routes = sorted(set(candidate.requests) & set(baseline.requests))
    evaluation.baseline_requests, _ = baseline.total(routes)
    evaluation.candidate_requests, _ = candidate.total(routes)
    if not candidate.requests:
        evaluation.reason = (
            f"No requests served by {deployment.version} in the {checkpoint} minutes since "
            "the deploy."
        )
        return evaluation
    if not routes:
        evaluation.reason = _no_baseline_reason(deployment, baseline_kind)
        return evaluation
    findings = compare(baseline, candidate, routes)
    findings += rollout_findings(deployment, end)
    adjust_for_multiple_comparisons(findings)
    evaluation.findings = findings
    _decide(evaluation, deployment, baseline, routes)
    return evaluation


def choose_baseline(deployment: Deployment, start: datetime, end: datetime):
    """Concurrent versions if the old one still serves; else the window before."""
    old_filter = SpanFilter(
        deployment.service, deployment.environment, start, end, deployment.version, False
    )
    sql, params = old_filter.where()
    if deployment.previous_version:
        sql += " AND service_version = %s"
        params.append(deployment.previous_version)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), max(start_time) FROM telemetry_span WHERE {sql}", params)
        old_count, old_last = cursor.fetchone()
    still_serving = old_last is not None and old_last >= end - (end - start) / 5
    if old_count >= settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS and still_serving:
        return old_filter, "concurrent"
    before = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    before_filter = SpanFilter(
        deployment.service,
        deployment.environment,
        start - before,
        start,
        deployment.version,
        False,
    )
    return before_filter, "before"


def read_side(span_filter: SpanFilter) -> Side:
    side = Side()
    where, params = span_filter.where()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT http_route, count(*), count(*) FILTER (WHERE is_error) "
            f"FROM telemetry_span WHERE {where} GROUP BY 1",
            params,
        )
        for route, requests, errors in cursor.fetchall():
            side.requests[route] = requests
            side.errors[route] = errors
        cursor.execute(
            f"SELECT COALESCE(NULLIF(exception_type, ''), left(status_message, 200)), count(*) "
            f"FROM telemetry_span WHERE {where} AND is_error GROUP BY 1",
            params,
        )
        side.error_types = {key: count for key, count in cursor.fetchall() if key}
        side.latencies_ms = _read_latencies(cursor, where, params, sum(side.requests.values()))
    return side


def _read_latencies(cursor, where: str, params: list, total: int) -> dict[str, np.ndarray]:
    sample_sql = ""
    if total > settings.MONOENV_DEPLOY_MAX_SAMPLES:
        # Span ids are random: their first byte picks a uniform, repeatable sample.
        cutoff = max(1, int(256 * settings.MONOENV_DEPLOY_MAX_SAMPLES / total))
        sample_sql = f" AND get_byte(span_id, 0) < {cutoff}"
    cursor.execute(
        f"SELECT http_route, duration_us FROM telemetry_span WHERE {where}{sample_sql}", params
    )
    by_route: dict[str, list[int]] = defaultdict(list)
    for route, duration_us in cursor.fetchall():
        by_route[route].append(duration_us)
    return {route: np.array(values) / 1000.0 for route, values in by_route.items()}


def compare(baseline: Side, candidate: Side, routes: list[str]) -> list[FindingResult]:
    """Every comparison, for the whole service and for each busy enough route."""
    minimum = settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS
    scopes = [(SERVICE, routes)] + [
        (route, [route])
        for route in routes
        if len(routes) > 1 and min(baseline.requests[route], candidate.requests[route]) >= minimum
    ]
    findings = []
    for label, scope_routes in scopes:
        findings.append(error_rate_finding(label, baseline, candidate, scope_routes))
        findings += latency_findings(label, baseline, candidate, scope_routes)
    findings += _new_error_type_findings(baseline, candidate, routes)
    return findings


def error_rate_finding(label, baseline: Side, candidate: Side, routes) -> FindingResult:
    limits = thresholds()
    base_n, base_errors = baseline.total(routes)
    cand_n, cand_errors = candidate.total(routes)
    result = stats.compare_error_rates(
        base_errors,
        base_n,
        cand_errors,
        cand_n,
        thresholds=limits,
        confidence=settings.MONOENV_DEPLOY_CONFIDENCE,
    )
    return _finding(
        "error_rate",
        label,
        result,
        base_n,
        cand_n,
        f"+{limits.error_rate_min_pp:g} pp and ×{limits.error_rate_min_ratio:g}",
    )


def latency_findings(label, baseline: Side, candidate: Side, routes) -> list[FindingResult]:
    limits = thresholds()
    base_ms = baseline.latencies_for(routes)
    cand_ms = candidate.latencies_for(routes)
    findings = []
    for metric, quantile in QUANTILES.items():
        if not stats.quantile_testable(len(base_ms), len(cand_ms), quantile):
            continue
        result = stats.compare_quantiles(
            base_ms,
            cand_ms,
            quantile,
            thresholds=limits,
            confidence=settings.MONOENV_DEPLOY_CONFIDENCE,
        )
        threshold = f"×{limits.latency_min_ratio:g} and +{limits.latency_min_ms:g} ms"
        findings.append(_finding(metric, label, result, len(base_ms), len(cand_ms), threshold))
    return findings


def _finding(metric, label, result: stats.Comparison, base_n, cand_n, threshold):
    return FindingResult(
        metric=metric,
        route=label,
        baseline_value=result.baseline_value,
        candidate_value=result.candidate_value,
        baseline_n=base_n,
        candidate_n=cand_n,
        threshold=threshold,
        effect_size=result.effect_size,
        p_value=result.p_value,
        interval_low=result.interval_low,
        interval_high=result.interval_high,
        practical=result.practical,
        direction=result.direction,
    )


def _new_error_type_findings(baseline: Side, candidate: Side, routes) -> list[FindingResult]:
    base_n, _ = baseline.total(routes)
    cand_n, _ = candidate.total(routes)
    findings = []
    for error_type, count in sorted(candidate.error_types.items()):
        if error_type in baseline.error_types:
            continue
        findings.append(
            FindingResult(
                metric="new_error_type",
                route=SERVICE,
                baseline_value=0,
                candidate_value=count,
                baseline_n=base_n,
                candidate_n=cand_n,
                threshold=f"at least {NEW_ERROR_TYPE_MIN_COUNT} occurrences",
                effect_size=count / cand_n if cand_n else None,
                p_value=stats.new_error_type_p_value(count, base_n, cand_n),
                practical=count >= NEW_ERROR_TYPE_MIN_COUNT,
                direction="up",
                detail=error_type,
            )
        )
    return findings


def rollout_findings(deployment: Deployment, end: datetime) -> list[FindingResult]:
    """The zero-downtime check: all versions' traffic and errors while the deploy runs."""
    start = deployment.deployed_at
    finished = max(deployment.finished_at, start + timedelta(minutes=ROLLOUT_MIN_MINUTES))
    rollout_end = min(finished, start + timedelta(minutes=ROLLOUT_MAX_MINUTES), end)
    minutes = int((rollout_end - start).total_seconds() // 60)
    if minutes < 1:
        return []
    before = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    usual = _minute_counts(deployment, start - before, start)
    during = _minute_counts(deployment, start, start + timedelta(minutes=minutes))
    usual_requests = sum(n for n, _ in usual.values())
    if not usual_requests:
        return []
    expected = usual_requests / before.total_seconds() * 60
    quietest = min(during.get(m, (0, 0))[0] for m in range(minutes))
    drop_p = min(1.0, stats.throughput_drop_p_value(quietest, expected) * minutes)
    findings = [
        FindingResult(
            metric="rollout_throughput",
            route=SERVICE,
            baseline_value=expected,
            candidate_value=quietest,
            baseline_n=usual_requests,
            candidate_n=sum(n for n, _ in during.values()),
            threshold=f"a minute below {THROUGHPUT_DROP_RATIO:.0%} of the usual requests/min",
            effect_size=quietest / expected,
            p_value=drop_p,
            practical=quietest <= expected * THROUGHPUT_DROP_RATIO,
            direction="down" if quietest < expected else "up",
        )
    ]
    during_requests = sum(n for n, _ in during.values())
    if during_requests:
        result = stats.compare_error_rates(
            sum(e for _, e in usual.values()),
            usual_requests,
            sum(e for _, e in during.values()),
            during_requests,
            thresholds=thresholds(),
            confidence=settings.MONOENV_DEPLOY_CONFIDENCE,
        )
        limits = thresholds()
        threshold = f"+{limits.error_rate_min_pp:g} pp and ×{limits.error_rate_min_ratio:g}"
        findings.append(
            _finding(
                "rollout_error_rate", SERVICE, result, usual_requests, during_requests, threshold
            )
        )
    return findings


def _minute_counts(deployment: Deployment, start: datetime, end: datetime) -> dict:
    """Requests and errors of every version, per minute counted from `start`."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT floor(extract(epoch FROM start_time - %s) / 60)::int, count(*),
                   count(*) FILTER (WHERE is_error)
            FROM telemetry_span
            WHERE service = %s AND kind = ANY(%s) AND environment = ANY(%s)
              AND start_time >= %s AND start_time < %s
            GROUP BY 1
            """,
            [
                start,
                deployment.service,
                [int(k) for k in REQUEST_KINDS],
                [deployment.environment, ""],
                start,
                end,
            ],
        )
        return {minute: (requests, errors) for minute, requests, errors in cursor.fetchall()}


def adjust_for_multiple_comparisons(findings: list[FindingResult]) -> None:
    alpha = 1 - settings.MONOENV_DEPLOY_CONFIDENCE
    adjusted = stats.holm([f.p_value if f.p_value is not None else 1.0 for f in findings])
    for finding, p_value in zip(findings, adjusted, strict=True):
        finding.adjusted_p_value = p_value
        finding.significant = finding.practical and p_value < alpha


def _decide(evaluation: Evaluation, deployment: Deployment, baseline: Side, routes) -> None:
    failures = [f for f in evaluation.findings if f.significant]
    if failures:
        evaluation.verdict = Verdict.FAIL
        evaluation.reason = "; ".join(describe(f) for f in _worst(failures)) + "."
        return
    needed = _requests_needed(baseline, routes)
    have = evaluation.candidate_requests
    against = _baseline_phrase(deployment, evaluation)
    if have >= needed:
        evaluation.verdict = Verdict.PASS
        evaluation.reason = (
            f"No significant regression in {have} requests of {deployment.version} "
            f"on {len(routes)} route(s), compared with {against}."
        )
        return
    evaluation.verdict = Verdict.INCONCLUSIVE
    if needed >= 10**9:
        evaluation.reason = (
            f"Too little baseline traffic ({evaluation.baseline_requests} requests in "
            f"{against}) to tell a regression from noise, however long {deployment.version} "
            "runs; a longer MONOENV_DEPLOY_BASELINE_MINUTES would help."
        )
        return
    evaluation.more_requests_needed = needed - have
    evaluation.reason = (
        f"No significant regression yet, but {have} requests of {deployment.version} are too "
        f"few to rule one out: ~{needed - have} more requests needed (compared with {against})."
    )


def _requests_needed(baseline: Side, routes) -> int:
    confidence = settings.MONOENV_DEPLOY_CONFIDENCE
    base_n, base_errors = baseline.total(routes)
    return max(
        stats.requests_needed_for_error_rate(
            base_errors, base_n, thresholds=thresholds(), confidence=confidence
        ),
        stats.requests_needed_for_latency(base_n, confidence=confidence),
    )


def _baseline_phrase(deployment: Deployment, evaluation: Evaluation) -> str:
    previous = deployment.previous_version or "the previous version"
    if evaluation.baseline_kind == "concurrent":
        return f"{previous} serving at the same time"
    minutes = settings.MONOENV_DEPLOY_BASELINE_MINUTES
    return f"the {minutes} minutes before the deploy"


def _no_baseline_reason(deployment: Deployment, baseline_kind: str) -> str:
    minutes = settings.MONOENV_DEPLOY_BASELINE_MINUTES
    return (
        f"No baseline: no other version served {deployment.version}'s routes at the same "
        f"time or in the {minutes} minutes before the deploy."
    )


def _worst(failures: list[FindingResult]) -> list[FindingResult]:
    """The findings a reason names: one per metric, at most three.

    A metric that regressed on one route only is named on that route; one
    that regressed across the service is named for the service.
    """
    by_metric: dict[str, list[FindingResult]] = defaultdict(list)
    for finding in failures:
        by_metric[finding.metric].append(finding)
    chosen = []
    for findings in by_metric.values():
        on_routes = [f for f in findings if f.route]
        for_service = [f for f in findings if not f.route]
        if len(on_routes) == 1 or not for_service:
            chosen.append(min(on_routes or findings, key=lambda f: f.adjusted_p_value or 0))
        else:
            chosen.append(for_service[0])
    return sorted(chosen, key=lambda f: f.adjusted_p_value or 0)[:3]


def describe(finding: FindingResult) -> str:
    """One sentence about a finding, for reasons and notifications."""
    where = f"on {finding.route}" if finding.route else "for the service"
    p_text = f"p={finding.adjusted_p_value:.2g}" if finding.adjusted_p_value is not None else ""
    if finding.metric in ("error_rate", "rollout_error_rate"):
        what = "error rate" if finding.metric == "error_rate" else "error rate during the rollout"
        return (
            f"{what} {where} rose from {finding.baseline_value:.2%} to "
            f"{finding.candidate_value:.2%} ({p_text}; threshold {finding.threshold})"
        )
    if finding.metric in QUANTILES:
        name = finding.metric.removeprefix("latency_")
        return (
            f"{name} latency {where} rose from {finding.baseline_value:.1f} ms to "
            f"{finding.candidate_value:.1f} ms ({p_text}; threshold {finding.threshold})"
        )
    if finding.metric == "new_error_type":
        return f"new error type {finding.detail!r} ({finding.candidate_value:.0f} times, {p_text})"
    if finding.metric == "rollout_throughput":
        return (
            f"throughput fell to {finding.candidate_value:.0f} requests/min during the rollout, "
            f"against {finding.baseline_value:.0f} usually ({p_text})"
        )
    return f"{finding.metric} {where}"
