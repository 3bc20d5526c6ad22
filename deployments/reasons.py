"""The sentences of a verdict: what deployments/judge.py decided, in words.

Pure code: no Django, no settings. Every sentence is built from a Judgement
and a Context the caller describes, so the same words serve a deploy and any
other candidate.
"""

from dataclasses import dataclass

from deployments.judge import QUANTILES, Finding, Judgement, Metric, Outcome, worst


@dataclass(frozen=True)
class Context:
    service: str
    candidate: str  # e.g. the new version
    against: str  # e.g. "v1 serving at the same time"
    minutes: float  # since the deploy
    baseline_minutes: int  # of a before/after baseline
    confidence: float  # of a pass
    recovery_minutes: int = 0  # the length of the window a recovery passed on


def reason(judgement: Judgement, context: Context) -> str:
    return _SENTENCES[judgement.outcome](judgement, context)


def _regressed(judgement: Judgement, context: Context) -> str:
    return "; ".join(describe(f) for f in worst(judgement.findings)) + "."


def _within(judgement: Judgement, context: Context) -> str:
    return (
        f"No regression in {judgement.candidate_requests} requests of {context.candidate} on "
        f"{judgement.routes} route(s), compared with {context.against}: with "
        f"{context.confidence:.0%} confidence neither the error rate nor p95 latency rose "
        "by its threshold."
    )


def _too_few(judgement: Judgement, context: Context) -> str:
    return (
        f"No significant regression yet, but {judgement.candidate_requests} requests of "
        f"{context.candidate} are too few to rule one out: ~{judgement.more_requests_needed} "
        f"more requests needed (compared with {context.against})."
    )


def _baseline_too_small(judgement: Judgement, context: Context) -> str:
    return (
        f"Too little baseline traffic ({judgement.baseline_requests} requests in "
        f"{context.against}) to tell a regression from noise, however long {context.candidate} "
        "runs; a longer MONOENV_DEPLOY_BASELINE_MINUTES would help."
    )


def _no_baseline(judgement: Judgement, context: Context) -> str:
    return (
        f"No baseline: no other version served {context.candidate}'s routes at the same "
        f"time or in the {context.baseline_minutes} minutes before the deploy."
    )


def _service_down(judgement: Judgement, context: Context) -> str:
    usual = judgement.findings[0].baseline_value or 0
    state = "" if judgement.verdict == "fail" else " so far"
    return (
        f"{context.service} has served no requests{state} in the {context.minutes:g} minutes "
        f"since {context.candidate} was deployed, against {usual:.1f} requests/min before: "
        "the new version does not answer and no other version serves."
    )


def _not_rolled_out(judgement: Judgement, context: Context) -> str:
    return (
        f"{context.candidate} has served no requests in the {context.minutes:g} minutes since "
        f"the deploy, while other versions served {judgement.baseline_requests}: the deploy "
        "has not rolled out."
    )


def _no_traffic(judgement: Judgement, context: Context) -> str:
    return (
        f"No requests served by {context.candidate} in the {context.minutes:g} minutes since "
        f"the deploy, and none by {context.service} before it."
    )


def _recovered(judgement: Judgement, context: Context) -> str:
    transient = judgement.findings[0]
    return (
        f"Transient regression, recovered: {context.candidate} regressed after the deploy "
        f"({transient.detail}); over the last {context.recovery_minutes} minutes, with "
        f"{context.confidence:.0%} confidence, neither its error rate nor its p95 latency is "
        f"up by its threshold, compared with {context.against}."
    )


def _no_regression_yet(judgement: Judgement, context: Context) -> str:
    return (
        f"No significant regression in {judgement.candidate_requests} requests of "
        f"{context.candidate} so far, compared with {context.against}."
    )


_SENTENCES = {
    Outcome.NO_REGRESSION_YET: _no_regression_yet,
    Outcome.RECOVERED: _recovered,
    Outcome.REGRESSED: _regressed,
    Outcome.WITHIN_THRESHOLDS: _within,
    Outcome.TOO_FEW_REQUESTS: _too_few,
    Outcome.BASELINE_TOO_SMALL: _baseline_too_small,
    Outcome.NO_BASELINE: _no_baseline,
    Outcome.SERVICE_DOWN: _service_down,
    Outcome.NOT_ROLLED_OUT: _not_rolled_out,
    Outcome.NO_TRAFFIC: _no_traffic,
}


def describe(finding: Finding) -> str:
    """One sentence about a finding, for reasons and notifications."""
    where = f"on {finding.route}" if finding.route else "for the service"
    if finding.detail == "new route":
        where += " (a new route, against the service's rate before)"
    p_text = f"p={finding.adjusted_p_value:.2g}" if finding.adjusted_p_value is not None else ""
    metric = finding.metric
    if metric in (Metric.ERROR_RATE, Metric.ROLLOUT_ERROR_RATE):
        what = "error rate" if metric == Metric.ERROR_RATE else "error rate during the rollout"
        return (
            f"{what} {where} rose from {finding.baseline_value:.2%} to "
            f"{finding.candidate_value:.2%} ({p_text}; threshold {finding.threshold})"
        )
    if metric in QUANTILES:
        name = metric.removeprefix("latency_")
        return (
            f"{name} latency {where} rose from {finding.baseline_value:.1f} ms to "
            f"{finding.candidate_value:.1f} ms ({p_text}; threshold {finding.threshold})"
        )
    if metric == Metric.NEW_ERROR_TYPE:
        return f"new error type {finding.detail!r} ({finding.candidate_value:.0f} times, {p_text})"
    if metric == Metric.ROLLOUT_THROUGHPUT:
        return (
            f"throughput fell to {finding.candidate_value:.0f} requests/min during the rollout, "
            f"against {finding.baseline_value:.0f} usually ({p_text})"
        )
    if metric == Metric.SERVED_REQUESTS:
        return f"no requests served, against {finding.baseline_value:.1f}/min before ({p_text})"
    return f"{metric} {where}"
