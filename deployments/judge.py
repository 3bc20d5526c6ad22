"""The verdict rule: a candidate against a baseline. Pure code: no Django, no settings.

A candidate is any set of requests judged against a baseline: a deploy's new
version against the old one, or a flag variant's cohort against the control.
Both are `Side` values read by the caller (deployments/sides.py reads them
from spans); the thresholds and confidences come in as `Rules`.

Invariants:
- Both sides are counted from the same population: every total used against
  a count is taken over the same routes as that count, so no test sees a
  negative cell.
- A route the baseline never served is part of the candidate: its errors are
  compared with the baseline's service-wide rate, and its error types count
  as new like any other.
- `fail` needs a finding that is significant after Holm's correction at the
  look's alpha, and whose estimate reaches the fail floor: a share
  (Thresholds.fail_floor) of its practical threshold, since a regression at
  the threshold is a real one (docs/deployments.md, "What fail means").
- `pass` needs non-inferiority of the service's error rate and p95 latency
  (stratified by route) at the look's pass alpha; anything else that does not
  fail is `inconclusive`.
- `recovered` is a pass of a recent window alone, at an alpha of its own
  (recovered()): the same statement, made about the time since the window
  began.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from deployments import stats
from deployments.metrics import Metric

SERVICE = ""  # the route of a finding about the whole service
PASS, FAIL, INCONCLUSIVE, RECOVERED = "pass", "fail", "inconclusive", "recovered"


QUANTILES = {Metric.LATENCY_P50: 0.5, Metric.LATENCY_P95: 0.95, Metric.LATENCY_P99: 0.99}


class Outcome(StrEnum):
    """Why the verdict is what it is; deployments/reasons.py words each one."""

    REGRESSED = "regressed"
    WITHIN_THRESHOLDS = "within_thresholds"
    TOO_FEW_REQUESTS = "too_few_requests"
    BASELINE_TOO_SMALL = "baseline_too_small"
    NO_BASELINE = "no_baseline"
    SERVICE_DOWN = "service_down"
    NOT_ROLLED_OUT = "not_rolled_out"
    NO_TRAFFIC = "no_traffic"
    RECOVERED = "recovered"
    NO_REGRESSION_YET = "no_regression_yet"  # a look between checkpoints, which cannot pass


@dataclass(frozen=True)
class Rules:
    thresholds: stats.Thresholds = field(default_factory=stats.Thresholds)
    # The alpha a fail may spend at this look, and the one a pass may: see stats.look_alpha.
    fail_alpha: float = 0.01
    pass_alpha: float = 0.01
    min_route_requests: int = 50
    new_error_type_min_count: int = 5
    throughput_drop_ratio: float = 0.5


@dataclass
class Side:
    """One side of a comparison: counts per route, error types, latencies."""

    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_types: dict[tuple[str, str], int] = field(default_factory=dict)  # (route, type)
    latencies_ms: dict[str, np.ndarray] = field(default_factory=dict)

    def routes(self) -> set[str]:
        return {route for route, n in self.requests.items() if n > 0}

    def total(self, routes=None) -> tuple[int, int]:
        routes = self.routes() if routes is None else routes
        return (
            sum(self.requests.get(r, 0) for r in routes),
            sum(self.errors.get(r, 0) for r in routes),
        )

    def types(self) -> dict[str, int]:
        """Occurrences of each error type over every route."""
        counts: dict[str, int] = defaultdict(int)
        for (_, error_type), count in self.error_types.items():
            counts[error_type] += count
        return dict(counts)

    def latencies(self, route: str) -> np.ndarray:
        return np.asarray(self.latencies_ms.get(route, np.array([])), dtype=float)

    def merged(self, later: "Side") -> "Side":
        """This side and a later, disjoint stretch of the same requests, as one side."""
        routes = set(self.requests) | set(later.requests)
        types = set(self.error_types) | set(later.error_types)
        return Side(
            requests={r: self.requests.get(r, 0) + later.requests.get(r, 0) for r in routes},
            errors={r: self.errors.get(r, 0) + later.errors.get(r, 0) for r in routes},
            error_types={
                key: self.error_types.get(key, 0) + later.error_types.get(key, 0) for key in types
            },
            latencies_ms={
                r: np.concatenate([self.latencies(r), later.latencies(r)]) for r in routes
            },
        )


@dataclass
class Finding:
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
    # The one-sided upper confidence bound of the regression (a rise of the
    # rate, or the candidate's quantile in ms), and whether it lies below the
    # threshold: the non-inferiority a pass rests on.
    upper_bound: float | None = None
    within_threshold: bool = False
    practical: bool = False
    significant: bool = False
    direction: str = ""
    detail: str = ""


@dataclass
class Judgement:
    verdict: str
    outcome: Outcome
    findings: list[Finding] = field(default_factory=list)
    baseline_requests: int = 0
    candidate_requests: int = 0
    routes: int = 0
    more_requests_needed: int | None = None


def judge(
    baseline: Side, candidate: Side, rules: Rules, *, extra: list[Finding] | None = None
) -> Judgement:
    """The verdict on a candidate that served requests (see judge_silence otherwise)."""
    shared = sorted(baseline.routes() & candidate.routes())
    judgement = Judgement(INCONCLUSIVE, Outcome.NO_BASELINE, routes=len(shared))
    judgement.baseline_requests = baseline.total(shared)[0]
    judgement.candidate_requests = candidate.total(shared)[0]
    if not baseline.routes():
        return judgement
    findings = compare(baseline, candidate, shared, rules) + list(extra or [])
    adjust(findings, alpha=rules.fail_alpha)
    judgement.findings = findings
    if any(f.significant for f in findings):
        judgement.verdict, judgement.outcome = FAIL, Outcome.REGRESSED
        return judgement
    if not shared:
        return judgement
    _pass_or_wait(judgement, baseline, shared, rules)
    return judgement


def _pass_or_wait(judgement: Judgement, baseline: Side, shared: list[str], rules: Rules) -> None:
    if rules.pass_alpha <= 0:
        judgement.outcome = Outcome.NO_REGRESSION_YET
        return
    service = [f for f in judgement.findings if f.route == SERVICE]
    required = [f for f in service if f.metric in (Metric.ERROR_RATE, Metric.LATENCY_P95)]
    if len(required) == 2 and all(f.within_threshold for f in required):
        judgement.verdict, judgement.outcome = PASS, Outcome.WITHIN_THRESHOLDS
        return
    needed = requests_needed(baseline, shared, rules)
    if needed >= stats.UNREACHABLE:
        judgement.outcome = Outcome.BASELINE_TOO_SMALL
        return
    judgement.outcome = Outcome.TOO_FEW_REQUESTS
    # Enough requests but no pass yet: the bound is near the threshold; more will tell.
    judgement.more_requests_needed = max(needed - judgement.candidate_requests, 1)


def requests_needed(baseline: Side, routes: list[str], rules: Rules) -> int:
    """Candidate requests a candidate like the baseline needs to pass."""
    confidence = 1 - rules.pass_alpha
    base_n, base_errors = baseline.total(routes)
    latencies = np.concatenate([baseline.latencies(r) for r in routes])
    return max(
        stats.requests_needed_for_error_rate(
            base_errors, base_n, thresholds=rules.thresholds, confidence=confidence
        ),
        stats.requests_needed_for_latency(
            latencies, 0.95, thresholds=rules.thresholds, confidence=confidence
        ),
    )


def compare(baseline: Side, candidate: Side, shared: list[str], rules: Rules) -> list[Finding]:
    """Every comparison: the service (route by route), each busy route, new routes and types."""
    findings = []
    if shared:
        findings.append(error_rate_finding(SERVICE, baseline, candidate, shared, rules))
        findings += latency_findings(SERVICE, baseline, candidate, shared, rules)
    busy = [
        route
        for route in shared
        if len(shared) > 1
        and min(baseline.requests[route], candidate.requests[route]) >= rules.min_route_requests
    ]
    for route in busy:
        findings.append(error_rate_finding(route, baseline, candidate, [route], rules))
        findings += latency_findings(route, baseline, candidate, [route], rules)
    findings += new_route_findings(baseline, candidate, rules)
    findings += new_error_type_findings(baseline, candidate, rules)
    return findings


def _strata(baseline: Side, candidate: Side, routes) -> list[stats.Stratum]:
    return [
        stats.Stratum(
            baseline.errors.get(r, 0),
            baseline.requests.get(r, 0),
            candidate.errors.get(r, 0),
            candidate.requests.get(r, 0),
        )
        for r in routes
    ]


def error_rate_threshold(thresholds: stats.Thresholds) -> str:
    text = f"+{thresholds.error_rate_min_pp:g} pp and ×{thresholds.error_rate_min_ratio:g}"
    return text + _floor_text(thresholds)


def latency_threshold(thresholds: stats.Thresholds) -> str:
    text = f"×{thresholds.latency_min_ratio:g} and +{thresholds.latency_min_ms:g} ms"
    return text + _floor_text(thresholds)


def _floor_text(thresholds: stats.Thresholds) -> str:
    if thresholds.fail_floor >= 1:
        return ""
    return f"; a significant rise fails from {thresholds.fail_floor:.0%} of it"


def error_rate_finding(label: str, baseline: Side, candidate: Side, routes, rules: Rules):
    strata = _strata(baseline, candidate, routes)
    result = stats.compare_stratified_error_rates(
        strata, thresholds=rules.thresholds, confidence=1 - rules.fail_alpha
    )
    finding = _finding(
        Metric.ERROR_RATE,
        label,
        result,
        baseline.total(routes)[0],
        candidate.total(routes)[0],
        error_rate_threshold(rules.thresholds),
    )
    if rules.pass_alpha > 0:
        within, bound, _ = stats.error_rate_within_threshold(
            strata, thresholds=rules.thresholds, confidence=1 - rules.pass_alpha
        )
        finding.upper_bound, finding.within_threshold = _finite(bound), within
    return finding


def latency_findings(label: str, baseline: Side, candidate: Side, routes, rules: Rules):
    latencies = stats.LatencyStrata(
        [(baseline.latencies(r), candidate.latencies(r)) for r in routes]
    )
    base_n = len(latencies.baseline_values)
    cand_n = len(latencies.candidate)
    findings = []
    for metric, quantile in QUANTILES.items():
        if not stats.quantile_testable(base_n, cand_n, quantile):
            continue
        result = latencies.compare(
            quantile, thresholds=rules.thresholds, confidence=1 - rules.fail_alpha
        )
        finding = _finding(
            metric, label, result, base_n, cand_n, latency_threshold(rules.thresholds)
        )
        if rules.pass_alpha > 0:
            within, bound, _ = latencies.within_threshold(
                quantile, thresholds=rules.thresholds, confidence=1 - rules.pass_alpha
            )
            finding.upper_bound, finding.within_threshold = _finite(bound), within
        findings.append(finding)
    return findings


def _finite(value: float) -> float | None:
    """None for a bound no sample can give (JSON has no infinity)."""
    return value if math.isfinite(value) else None


def _finding(metric, label, result: stats.Comparison, base_n, cand_n, threshold) -> Finding:
    return Finding(
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


def new_route_findings(baseline: Side, candidate: Side, rules: Rules) -> list[Finding]:
    """A busy route the baseline never served, against the baseline's service-wide rate."""
    base_n, base_errors = baseline.total()
    findings = []
    for route in sorted(candidate.routes() - baseline.routes()):
        if candidate.requests[route] < rules.min_route_requests:
            continue
        result = stats.compare_error_rates(
            base_errors,
            base_n,
            candidate.errors.get(route, 0),
            candidate.requests[route],
            thresholds=rules.thresholds,
            confidence=1 - rules.fail_alpha,
        )
        finding = _finding(
            Metric.ERROR_RATE,
            route,
            result,
            base_n,
            candidate.requests[route],
            error_rate_threshold(rules.thresholds),
        )
        finding.detail = "new route"
        findings.append(finding)
    return findings


def new_error_type_findings(baseline: Side, candidate: Side, rules: Rules) -> list[Finding]:
    """Error types the baseline never had, counted over every route of both sides."""
    base_n, _ = baseline.total()
    cand_n, _ = candidate.total()
    known = baseline.types()
    findings = []
    for error_type, count in sorted(candidate.types().items()):
        if error_type in known:
            continue
        findings.append(
            Finding(
                metric=Metric.NEW_ERROR_TYPE,
                route=SERVICE,
                baseline_value=0,
                candidate_value=count,
                baseline_n=base_n,
                candidate_n=cand_n,
                threshold=f"at least {rules.new_error_type_min_count} occurrences",
                effect_size=count / cand_n,
                p_value=stats.new_error_type_p_value(count, base_n, cand_n),
                practical=count >= rules.new_error_type_min_count,
                direction="up",
                detail=error_type,
            )
        )
    return findings


def rollout_findings(
    usual: list[tuple[int, int]], during: list[tuple[int, int]], rules: Rules
) -> list[Finding]:
    """The zero-downtime check: every version's (requests, errors) per minute.

    `usual` are the minutes before the deploy, `during` those of the rollout.
    The quietest rollout minute is tested against the usual rate (Poisson,
    Bonferroni over the rollout's minutes), and the rollout's errors against
    the usual error rate.
    """
    usual_requests = sum(n for n, _ in usual)
    if not usual_requests or not during:
        return []
    expected = usual_requests / len(usual)
    quietest = min(n for n, _ in during)
    during_requests = sum(n for n, _ in during)
    findings = [
        Finding(
            metric=Metric.ROLLOUT_THROUGHPUT,
            route=SERVICE,
            baseline_value=expected,
            candidate_value=quietest,
            baseline_n=usual_requests,
            candidate_n=during_requests,
            threshold=f"a minute below {rules.throughput_drop_ratio:.0%} of the usual requests/min",
            effect_size=quietest / expected,
            p_value=min(1.0, stats.throughput_drop_p_value(quietest, expected) * len(during)),
            practical=quietest <= expected * rules.throughput_drop_ratio,
            direction="down" if quietest < expected else "up",
        )
    ]
    if during_requests:
        result = stats.compare_error_rates(
            sum(e for _, e in usual),
            usual_requests,
            sum(e for _, e in during),
            during_requests,
            thresholds=rules.thresholds,
            confidence=1 - rules.fail_alpha,
        )
        findings.append(
            _finding(
                Metric.ROLLOUT_ERROR_RATE,
                SERVICE,
                result,
                usual_requests,
                during_requests,
                error_rate_threshold(rules.thresholds),
            )
        )
    return findings


def judge_silence(
    *, usual_per_minute: float, minutes: float, others_serving: int, rules: Rules
) -> Judgement:
    """The verdict on a candidate that served nothing at all.

    Other versions still serving: the deploy has not rolled out (no pass, no
    fail). Nothing serving where traffic was due: the worst regression there
    is, failed as soon as the silence is significant. No traffic before
    either: nothing to tell.
    """
    if others_serving:
        judgement = Judgement(INCONCLUSIVE, Outcome.NOT_ROLLED_OUT)
        judgement.baseline_requests = others_serving
        return judgement
    expected = usual_per_minute * minutes
    if expected <= 0:
        return Judgement(INCONCLUSIVE, Outcome.NO_TRAFFIC)
    finding = Finding(
        metric=Metric.SERVED_REQUESTS,
        route=SERVICE,
        baseline_value=usual_per_minute,
        candidate_value=0,
        baseline_n=round(expected),
        candidate_n=0,
        threshold=f"below {rules.throughput_drop_ratio:.0%} of the usual requests/min",
        effect_size=0.0,
        p_value=math.exp(-expected),
        practical=True,
        direction="down",
    )
    adjust([finding], alpha=rules.fail_alpha)
    verdict = FAIL if finding.significant else INCONCLUSIVE
    return Judgement(verdict, Outcome.SERVICE_DOWN, findings=[finding])


def recovered(recent: Judgement) -> bool:
    """Whether a recent window, judged on its own, shows the candidate back within thresholds.

    The same statement as a pass, on the window alone: no significant
    finding, and the one-sided upper bounds of the service's error rate and
    p95 rise (route by route) below their whole thresholds, at the pass alpha
    the window's rules give it (analysis.recovery_plan). A window sitting on
    a threshold shows this with probability at most that alpha.
    """
    return recent.verdict == PASS


def recovery(recent: Judgement, baseline: Side, regression: Side, *, minutes: float) -> Judgement:
    """A transient regression that ended: the recent window, and what the regression cost.

    `regression` is the candidate from time zero to the start of the recent
    window. The cost is what it served beyond the baseline: errors above the
    baseline's rate, and latency above the baseline's mean, route by route.
    """
    extra_errors, extra_seconds = 0.0, 0.0
    for route in regression.routes() & baseline.routes():
        n, errors = regression.total([route])
        base_n, base_errors = baseline.total([route])
        extra_errors += errors - n * base_errors / base_n
        base_ms = baseline.latencies(route)
        cand_ms = regression.latencies(route)
        if len(base_ms) and len(cand_ms):
            extra_seconds += n * (cand_ms.mean() - base_ms.mean()) / 1000
    finding = Finding(
        metric=Metric.TRANSIENT_REGRESSION,
        route=SERVICE,
        baseline_value=0,
        candidate_value=minutes,
        baseline_n=baseline.total()[0],
        candidate_n=regression.total()[0],
        threshold="back within every threshold since",
        effect_size=max(extra_errors, 0.0),
        practical=True,
        direction="up",
        detail=(
            f"lasted at most {minutes:g} min; {max(extra_errors, 0):.0f} extra errors and "
            f"{max(extra_seconds, 0):.0f} s of extra latency over "
            f"{regression.total()[0]} requests"
        ),
    )
    judgement = Judgement(RECOVERED, Outcome.RECOVERED, findings=[finding, *recent.findings])
    judgement.baseline_requests = recent.baseline_requests
    judgement.candidate_requests = recent.candidate_requests
    judgement.routes = recent.routes
    return judgement


def adjust(findings: list[Finding], *, alpha: float, family: int | None = None) -> None:
    """Holm across the findings (and `family` − len(findings) untested ones, at p = 1)."""
    p_values = [f.p_value if f.p_value is not None else 1.0 for f in findings]
    padding = [1.0] * max(0, (family or 0) - len(findings))
    for finding, p_value in zip(findings, stats.holm(p_values + padding), strict=False):
        finding.adjusted_p_value = p_value
        finding.significant = finding.practical and p_value < alpha


def worst(findings: list[Finding]) -> list[Finding]:
    """The significant findings a reason names: one per metric, at most three.

    A metric that regressed on one route only is named on that route; one
    that regressed across the service is named for the service.
    """
    by_metric: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.significant:
            by_metric[finding.metric].append(finding)
    chosen = []
    for group in by_metric.values():
        on_routes = [f for f in group if f.route]
        for_service = [f for f in group if not f.route]
        if len(on_routes) == 1 or not for_service:
            chosen.append(min(on_routes or group, key=lambda f: f.adjusted_p_value or 0))
        else:
            chosen.append(for_service[0])
    return sorted(chosen, key=lambda f: f.adjusted_p_value or 0)[:3]
