"""Which change explains a regression: deploys of any service, ranked by the traces.

A route regressed (a deploy failed its analysis, an SLO paged, or the route
watch saw a shift between deploys). Every deploy in the lookback is a suspect.
The traces of the regressed route say where its extra errors and time went: if
they sit in child spans served by another service, and that service deployed,
its deploy ranks first.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from deployments import topology
from deployments.models import Deployment, RouteShift, Suspect
from telemetry.models import SpanKind

SAMPLED_REQUESTS = 3000
# Child spans may start a little before their root is cut off, and end after.
TRACE_SLACK = timedelta(minutes=5)
RECENCY_WEIGHT = 0.1
LATE_SLACK = timedelta(seconds=30)


@dataclass(frozen=True)
class Regression:
    service: str
    route: str  # '' for the whole service
    start: datetime
    end: datetime
    baseline_start: datetime
    # When it began, if known (a deploy's own time); an alert knows only its window.
    began: datetime | None = None

    @property
    def latest_cause(self) -> datetime:
        return self.began or self.end


@dataclass(frozen=True)
class Ranked:
    deployment: Deployment
    score: float
    evidence: str


def rank(regression: Regression) -> list[Ranked]:
    lookback = timedelta(minutes=settings.MONOENV_DEPLOY_SUSPECT_LOOKBACK_MINUTES)
    candidates = list(
        Deployment.objects.filter(
            started_at__gte=regression.start - lookback, started_at__lte=regression.end
        )
    )
    if not candidates:
        return []
    shares = downstream_shares(regression)
    ranked = [_score(deploy, regression, shares, lookback) for deploy in candidates]
    ranked.sort(key=lambda r: (-r.score, -r.deployment.started_at.timestamp()))
    return ranked


def downstream_shares(regression: Regression) -> dict[str, float]:
    regressed = _breakdown(regression, regression.start, regression.end)
    baseline = _breakdown(regression, regression.baseline_start, regression.start)
    return topology.downstream_shares(regressed, baseline)


def _score(deploy: Deployment, regression: Regression, shares, lookback) -> Ranked:
    age = regression.latest_cause - deploy.deployed_at
    # A change made once the regression was under way cannot have caused it.
    late = age < -LATE_SLACK
    recency = 0.0 if late else max(0.0, 1 - max(age, timedelta(0)) / lookback) * RECENCY_WEIGHT
    ago = _ago(regression.latest_cause, deploy.deployed_at)
    where = f"{regression.service} {regression.route}".strip()
    if late:
        evidence = f"{deploy.service} deployed {deploy.version} {ago}, so it cannot have begun it."
        return Ranked(deploy, 0.0, evidence)
    if deploy.service == regression.service:
        explained_elsewhere = max(shares.values(), default=0.0)
        share = 1 - explained_elsewhere
        evidence = (
            f"{deploy.service} itself deployed {deploy.version} {ago}; "
            f"{share:.0%} of the regression on {where} is not explained by services below it."
        )
        return Ranked(deploy, share * 0.9 + recency, evidence)
    share = shares.get(deploy.service)
    if share is None:
        evidence = f"{deploy.service} deployed {deploy.version} {ago}; it is not below {where}."
        return Ranked(deploy, recency / 2, evidence)
    evidence = (
        f"{share:.0%} of the extra errors or time on {where} is in child spans served by "
        f"{deploy.service}, which deployed {deploy.version} {ago}."
    )
    return Ranked(deploy, share + recency, evidence)


def _ago(moment: datetime, deployed_at: datetime) -> str:
    minutes = round((moment - deployed_at).total_seconds() / 60)
    if minutes >= 0:
        return f"{minutes} min before the regression"
    return f"{-minutes} min after the regression began"


def _breakdown(regression: Regression, start: datetime, end: datetime) -> topology.Breakdown:
    roots = _sample_roots(regression, start, end)
    if not roots:
        return topology.Breakdown()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT trace_id, span_id, parent_span_id, service, duration_us, is_error "
            "FROM telemetry_span WHERE trace_id = ANY(%s) AND start_time >= %s "
            "AND start_time < %s",
            [list({root.trace_id for root in roots}), start - TRACE_SLACK, end + TRACE_SLACK],
        )
        spans = [_trace_span(row) for row in cursor.fetchall()]
    return topology.breakdown(spans, roots)


def _sample_roots(regression: Regression, start: datetime, end: datetime):
    route_sql = " AND http_route = %s" if regression.route else ""
    params = [regression.service, int(SpanKind.SERVER), start, end]
    params += [regression.route] if regression.route else []
    with connection.cursor() as cursor:
        # Trace ids are random, so the lowest ones are a uniform sample.
        cursor.execute(
            "SELECT trace_id, span_id, parent_span_id, service, duration_us, is_error "
            "FROM telemetry_span WHERE service = %s AND kind = %s AND start_time >= %s "
            f"AND start_time < %s{route_sql} ORDER BY trace_id LIMIT {SAMPLED_REQUESTS}",
            params,
        )
        return [_trace_span(row) for row in cursor.fetchall()]


def _trace_span(row) -> topology.TraceSpan:
    trace_id, span_id, parent_span_id, service, duration_us, is_error = row
    return topology.TraceSpan(
        bytes(trace_id),
        bytes(span_id),
        bytes(parent_span_id) if parent_span_id else None,
        service,
        duration_us,
        is_error,
    )


def record_for_deploy(deploy: Deployment, regression: Regression) -> list[Suspect]:
    return _record(rank(regression), deployment=deploy)


def record_for_alert(alert_id: int, regression: Regression) -> list[Suspect]:
    return _record(rank(regression), alert_id=alert_id)


def record_for_shift(shift: RouteShift, regression: Regression) -> list[Suspect]:
    return _record(rank(regression), route_shift=shift)


def _record(ranked: list[Ranked], *, deployment=None, alert_id=None, route_shift=None):
    with transaction.atomic():
        Suspect.objects.filter(
            deployment=deployment, alert_id=alert_id, route_shift=route_shift
        ).delete()
        return Suspect.objects.bulk_create(
            Suspect(
                deployment=deployment,
                alert_id=alert_id,
                route_shift=route_shift,
                suspect=entry.deployment,
                rank=position,
                score=round(entry.score, 4),
                evidence=entry.evidence,
            )
            for position, entry in enumerate(ranked, start=1)
        )
