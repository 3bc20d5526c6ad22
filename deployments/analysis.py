"""Deploy analysis: a deploy's new version judged against its baseline, at one look.

The candidate is the new version's request spans from time zero to the look.
The baseline is the previous version over the same range when both versions
serve at once (a canary or a rolling deploy); otherwise the same service in a
window before the deploy. deployments/sides.py reads both from spans,
deployments/judge.py decides, deployments/reasons.py words it.

Looks. A deploy is looked at every minute of its first
MONOENV_DEPLOY_WATCH_MINUTES, and at each of MONOENV_DEPLOY_CHECKPOINTS. Each
look spends part of 1 − confidence (Lan-DeMets spending, Kim-DeMets power
family with MONOENV_DEPLOY_SPENDING_RHO, and MONOENV_DEPLOY_FINAL_ALPHA_SHARE
kept for the last look; stats.look_alpha):
a fail may come at any look, a pass only at a checkpoint, a recovery only on
its grid (recovery_plan). Over all the looks of a deploy, the chance of a
false fail, of a pass despite a threshold-sized regression, and of a
recovery despite one that persists, each stays within 1 − confidence.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache, caches

from deployments import judge, reasons, sides, stats
from deployments.models import Deployment, looks
from telemetry import spans
from telemetry.spans import RequestFilter


@dataclass
class LookResult:
    """What one look at a deploy found."""

    checkpoint: int  # minutes after time zero
    judgement: judge.Judgement
    reason: str
    baseline_kind: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    summary: bool = False  # a checkpoint, kept in the history
    findings: list[judge.Finding] = field(init=False)

    def __post_init__(self):
        self.findings = self.judgement.findings

    @property
    def verdict(self) -> str:
        return self.judgement.verdict


def thresholds() -> stats.Thresholds:
    return stats.Thresholds(
        error_rate_min_pp=settings.MONOENV_DEPLOY_ERROR_RATE_MIN_PP,
        error_rate_min_ratio=settings.MONOENV_DEPLOY_ERROR_RATE_MIN_RATIO,
        latency_min_ratio=settings.MONOENV_DEPLOY_LATENCY_MIN_RATIO,
        latency_min_ms=settings.MONOENV_DEPLOY_LATENCY_MIN_MS,
        fail_floor=settings.MONOENV_DEPLOY_FAIL_FLOOR,
    )


def rules_at(minutes: int) -> judge.Rules:
    """The rules of the look at `minutes`, with the alphas it may spend."""
    alpha = 1 - settings.MONOENV_DEPLOY_CONFIDENCE
    schedule = looks()
    checkpoints = sorted(settings.MONOENV_DEPLOY_CHECKPOINTS)
    pass_alpha = 0.0
    if minutes in checkpoints:
        pass_alpha = _spend(alpha, minutes, checkpoints)
    return judge.Rules(
        thresholds=thresholds(),
        fail_alpha=_spend(alpha, minutes, schedule),
        pass_alpha=pass_alpha,
        min_route_requests=settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS,
    )


def _spend(alpha: float, minutes: int, schedule: list[int]) -> float:
    earlier = [m for m in schedule if m < minutes]
    horizon = max(schedule)
    return stats.look_alpha(
        alpha, min(minutes, horizon), earlier[-1] if earlier else 0, horizon,
        rho=settings.MONOENV_DEPLOY_SPENDING_RHO,
        final=settings.MONOENV_DEPLOY_FINAL_ALPHA_SHARE,
    )  # fmt: skip


def evaluate(deployment: Deployment, checkpoint: int) -> LookResult:
    """Compare the deploy's version with its baseline, up to `checkpoint` minutes."""
    start = deployment.judged_from
    end = deployment.checkpoint_time(checkpoint)
    rules = rules_at(checkpoint)
    summary = checkpoint in settings.MONOENV_DEPLOY_CHECKPOINTS
    candidate = _read_since(deployment, "candidate", _candidate_filter(deployment, start, end),
                            exact=summary)  # fmt: skip
    baseline_filter, baseline_kind = choose_baseline(deployment, start, end)
    baseline = _read_since(deployment, baseline_kind, baseline_filter, exact=summary)
    if not candidate.routes():
        judgement = _silence(deployment, start, end, rules)
    else:
        judgement = judge.judge(baseline, candidate, rules, extra=rollout(deployment, end, rules))
    return _result(deployment, checkpoint, judgement, baseline_kind, start, end)


def recovery_plan(since: int, look: int) -> list[tuple[int, judge.Rules]]:
    """The recovery tests of the look at `look`: each window's start (minutes) and rules.

    `since` is where the regression's judging began (time zero, or the last
    recovery). Windows come longest first; see stats.recovery_alphas for the
    grid and the alpha each gets. Their rules spend that alpha on a pass.
    """
    windows = stats.recovery_alphas(
        1 - settings.MONOENV_DEPLOY_CONFIDENCE,
        since=since,
        looks=looks(),
        step=settings.MONOENV_DEPLOY_RECOVERY_MINUTES,
    ).get(look, [])
    rules = rules_at(look)
    return [(start, replace(rules, pass_alpha=alpha)) for start, alpha in windows]


def recovery(deployment: Deployment, checkpoint: int) -> LookResult | None:
    """A recovered transient regression, if a recent window would pass on its own.

    The windows end at the look and start on recovery_plan's grid; the
    longest that passes, against the same kind of baseline, is the recovery,
    and the time before it, back to time zero (or the last recovery), is the
    regression.
    """
    end = deployment.checkpoint_time(checkpoint)
    since = round((deployment.judged_from - deployment.deployed_at).total_seconds() / 60)
    for start, rules in recovery_plan(since, checkpoint):
        recent_start = deployment.checkpoint_time(start)
        recent = sides.read_side(
            _candidate_filter(deployment, recent_start, end), max_samples=_samples()
        )
        baseline_filter, baseline_kind = choose_baseline(deployment, recent_start, end)
        baseline = sides.read_side(baseline_filter, max_samples=_samples())
        recent_judgement = judge.judge(baseline, recent, rules)
        if judge.recovered(recent_judgement):
            break
    else:
        return None
    regression = sides.read_side(
        _candidate_filter(deployment, deployment.judged_from, recent_start),
        max_samples=_samples(),
    )
    minutes = (recent_start - deployment.judged_from).total_seconds() / 60
    judgement = judge.recovery(recent_judgement, baseline, regression, minutes=minutes)
    return _result(deployment, checkpoint, judgement, baseline_kind, recent_start, end)


def _result(deployment, checkpoint, judgement, baseline_kind, start, end) -> LookResult:
    context = reasons.Context(
        service=deployment.service,
        candidate=deployment.version,
        against=_baseline_phrase(deployment, baseline_kind),
        minutes=checkpoint,
        baseline_minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES,
        confidence=settings.MONOENV_DEPLOY_CONFIDENCE,
        recovery_minutes=round((end - start).total_seconds() / 60),
    )
    return LookResult(
        checkpoint=checkpoint,
        judgement=judgement,
        reason=reasons.reason(judgement, context),
        baseline_kind=baseline_kind,
        window_start=start,
        window_end=end,
        summary=checkpoint in settings.MONOENV_DEPLOY_CHECKPOINTS,
    )


def _read_since(deployment: Deployment, role: str, span_filter: RequestFilter, *, exact: bool):
    """A side read incrementally: the cached side up to the last look, plus what came since.

    Looking every minute would otherwise re-read every span since time zero,
    each minute. The cache is derived state, kept for the deploy's first
    hours; a checkpoint (`exact`) reads everything again, which also counts
    the spans that arrived later than the look before them.
    """
    if deployment.pk is None:
        return sides.read_side(span_filter, max_samples=_samples())
    key = f"deployments:side:{deployment.pk}:{role}:{span_filter.start.isoformat()}"
    cached = None if exact else state_cache().get(key)
    if cached is not None and cached[0] <= span_filter.end:
        read_until, side = cached
        if read_until < span_filter.end:
            later = replace(span_filter, start=read_until)
            side = side.merged(sides.read_side(later, max_samples=_samples()))
    else:
        side = sides.read_side(span_filter, max_samples=_samples())
    state_cache().set(key, (span_filter.end, side), timeout=CACHE_SECONDS)
    return side


def state_cache():
    """Where looks keep their state: Redis when MONOENV_DEPLOY_STATE_CACHE_URL is set."""
    return caches["verdicts"] if "verdicts" in settings.CACHES else cache


# Longer than a deploy's looks last, so the state outlives every look of the first hour.
CACHE_SECONDS = 3 * 3600


def _samples() -> int:
    return settings.MONOENV_DEPLOY_MAX_SAMPLES


def _candidate_filter(deployment: Deployment, start: datetime, end: datetime) -> RequestFilter:
    return RequestFilter(
        deployment.service, start, end, environment=deployment.spans_environment,
        version=deployment.version,
    )  # fmt: skip


def choose_baseline(deployment: Deployment, start: datetime, end: datetime):
    """Concurrent versions if the old one still serves; else the window before."""
    concurrent = RequestFilter(
        deployment.service, start, end, environment=deployment.spans_environment,
        exclude_version=deployment.version,
    )  # fmt: skip
    previous = concurrent
    if deployment.previous_version:
        previous = RequestFilter(
            deployment.service, start, end, environment=deployment.spans_environment,
            version=deployment.previous_version,
        )  # fmt: skip
    recent = end - (end - start) / 5
    minimum = settings.MONOENV_DEPLOY_MIN_ROUTE_REQUESTS
    if sides.still_serving(previous, at_least=minimum, since=recent):
        return previous, "concurrent"
    # Before the deploy, even when judging from a later start.
    zero = deployment.deployed_at
    before = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    return _before_filter(deployment, zero - before, zero), "before"


def _before_filter(deployment: Deployment, start: datetime, end: datetime) -> RequestFilter:
    return RequestFilter(
        deployment.service, start, end, environment=deployment.spans_environment,
        exclude_version=deployment.version,
    )  # fmt: skip


def _silence(deployment: Deployment, start: datetime, end: datetime, rules) -> judge.Judgement:
    """The new version served nothing: did the service stop, or did the deploy not roll out?"""
    zero = deployment.deployed_at
    before = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    usual = sides.served(_before_filter(deployment, zero - before, zero))
    others = RequestFilter(
        deployment.service, start, end, environment=deployment.spans_environment,
        exclude_version=deployment.version,
    )  # fmt: skip
    # Only versions serving at the end count: an old version that served the
    # first seconds and then went away has been replaced by nothing.
    count, last = spans.presence(others)
    recent = end - (end - start) / 5
    return judge.judge_silence(
        usual_per_minute=usual / (before.total_seconds() / 60),
        minutes=(end - start).total_seconds() / 60,
        others_serving=count if last is not None and last >= recent else 0,
        rules=rules,
    )


ROLLOUT_MIN_MINUTES = 2
ROLLOUT_MAX_MINUTES = 15


def rollout(deployment: Deployment, end: datetime, rules) -> list[judge.Finding]:
    """The zero-downtime check: all versions' traffic and errors while the deploy runs."""
    start = deployment.deployed_at
    finished = max(deployment.finished_at, start + timedelta(minutes=ROLLOUT_MIN_MINUTES))
    rollout_end = min(finished, start + timedelta(minutes=ROLLOUT_MAX_MINUTES), end)
    key = f"deployments:rollout:{deployment.pk}:{start.isoformat()}:{rollout_end.isoformat()}"
    series = state_cache().get(key) if deployment.pk is not None else None
    if series is None:
        before = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
        every_version = {"environment": deployment.spans_environment}
        series = (
            sides.minute_series(
                RequestFilter(deployment.service, start - before, start, **every_version)
            ),
            sides.minute_series(
                RequestFilter(deployment.service, start, rollout_end, **every_version)
            ),
        )
        if deployment.pk is not None and rollout_end < end:
            state_cache().set(key, series, timeout=CACHE_SECONDS)  # the rollout is over: fixed
    return judge.rollout_findings(*series, rules)


def _baseline_phrase(deployment: Deployment, baseline_kind: str) -> str:
    previous = deployment.previous_version or "the previous version"
    if baseline_kind == "concurrent":
        return f"{previous} serving at the same time"
    minutes = settings.MONOENV_DEPLOY_BASELINE_MINUTES
    return f"the {minutes} minutes before the deploy"
