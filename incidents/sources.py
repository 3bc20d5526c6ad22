"""What incidents read from the apps below: signals, their state, and the changes around them.

The one place that knows slo's, deployments' and flags' models, so a change
there changes here only. Nothing below imports incidents: new signals are
found by polling these reads (incidents/jobs.py), not by being told.

A signal is a page burn alert, a deploy's `fail` verdict, a flag rollout's
`fail` verdict, or a route shift.
Each carries a *watch*: the per-minute series whose burn says when the
regression began and when it stopped (incidents/lifecycle.py).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from deployments import route_watch
from deployments.models import (
    Deployment,
    RouteShift,
    Suspect,
    Verdict,
    VerdictRecord,
)
from flags import suspects as flag_suspects
from flags.models import FlagChange, FlagVerdictRecord
from incidents.lifecycle import MinuteCounts
from incidents.models import Severity, SignalKind
from slo import status as slo_status
from slo.models import SLI, SLO, Alert
from slo.models import Severity as AlertSeverity
from telemetry import rollups, spans

SAMPLED_TRACES = 200
# A deploy's error rate burns above max(2 × its baseline, baseline + 0.5 pp).
DEPLOY_BURN_RATIO = 2.0
DEPLOY_BURN_MIN = 0.005


@dataclass(frozen=True)
class Signal:
    kind: str
    source_id: int
    service: str
    environment: str
    at: datetime
    title: str
    summary: str
    link: str
    severity: str
    watch: dict = field(default_factory=dict)
    not_before: datetime | None = None


def url(path: str) -> str:
    return f"{settings.MONOENV_PUBLIC_URL}{path}"


def new_signals(*, since: datetime, known: set[tuple[str, int]]) -> list[Signal]:
    """Page alerts, fail verdicts (deploys, rollouts) and shifts since `since`, not in `known`."""
    found = [
        *(_alert_signal(alert) for alert in _page_alerts(since)),
        *(_verdict_signal(deploy) for deploy in _failed_deploys(since)),
        *(_flag_verdict_signal(change) for change in _failed_rollouts(since)),
        *(_shift_signal(shift) for shift in RouteShift.objects.filter(detected_at__gte=since)),
    ]
    return sorted(
        (s for s in found if (s.kind, s.source_id) not in known), key=lambda s: (s.at, s.kind)
    )


def _page_alerts(since: datetime):
    return Alert.objects.filter(severity=AlertSeverity.PAGE, fired_at__gte=since).select_related(
        "slo"
    )


def _failed_deploys(since: datetime):
    return Deployment.objects.filter(verdict=Verdict.FAIL, evaluated_at__gte=since)


def _failed_rollouts(since: datetime):
    return FlagChange.objects.filter(verdict=Verdict.FAIL, evaluated_at__gte=since)


def _alert_signal(alert: Alert) -> Signal:
    slo = alert.slo
    return Signal(
        kind=SignalKind.ALERT,
        source_id=alert.pk,
        service=slo.service,
        environment="",
        at=alert.fired_at,
        title=f"{slo.service}: SLO {slo.name} is burning its error budget",
        summary=alert_summary(alert),
        link=url(f"/slos/{slo.pk}/"),
        severity=Severity.SEV2,
        watch={"slo_id": slo.pk, "threshold": 1 - slo.objective_ratio},
    )


def alert_summary(alert: Alert) -> str:
    return (
        f"Page alert on SLO {alert.slo.name}: burn rate {alert.long_burn_rate:.1f}× over "
        f"{alert.windows} (threshold {alert.threshold:.1f}×)"
    )


def _verdict_signal(deploy: Deployment) -> Signal:
    baseline = _baseline_error_rate(deploy.service, deploy.deployed_at)
    threshold = max(baseline * DEPLOY_BURN_RATIO, baseline + DEPLOY_BURN_MIN)
    return Signal(
        kind=SignalKind.VERDICT,
        source_id=deploy.pk,
        service=deploy.service,
        environment=deploy.environment,
        at=deploy.evaluated_at,
        title=f"{deploy.service}: deploy of {deploy.version} failed its verdict",
        summary=f"Deploy {deploy.service} {deploy.version} failed its verdict: "
        f"{first_line(deploy.verdict_reason)}",
        link=url(f"/deploys/{deploy.pk}/"),
        severity=Severity.SEV3,
        watch={
            "service": deploy.service,
            "route": None,
            "metric": "error_rate",
            "threshold": threshold,
        },  # fmt: skip
        not_before=deploy.deployed_at,
    )


def _flag_verdict_signal(change: FlagChange) -> Signal:
    """A failed rollout: its failing cohort's service, watched on its worst route's error rate.

    The route's error rate, not the cohort's: when the flag is reverted the
    cohort falls silent, and silence is not recovery (incidents/lifecycle.py).
    """
    service, route = _failing_place(change)
    baseline = _baseline_error_rate(service, change.at, route=route)
    threshold = max(baseline * DEPLOY_BURN_RATIO, baseline + DEPLOY_BURN_MIN)
    return Signal(
        kind=SignalKind.FLAG_VERDICT,
        source_id=change.pk,
        service=service,
        environment=change.environment,
        at=change.evaluated_at,
        title=f"{service}: the rollout of flag {change.flag} failed its verdict",
        summary=f"Rollout of flag {change.flag} failed its verdict: "
        f"{first_line(change.verdict_reason)}",
        link=change.link(),
        severity=Severity.SEV3,
        watch={"service": service, "route": route, "metric": "error_rate",
               "threshold": threshold},  # fmt: skip
        not_before=change.at,
    )


def _failing_place(change: FlagChange) -> tuple[str, str | None]:
    """The service and route of the rollout's worst failing finding (None: the whole service)."""
    record = change.verdict_records.filter(verdict=Verdict.FAIL).last()
    failing = record.findings.filter(significant=True).order_by("route") if record else []
    worst = next((f for f in failing if f.route), None) or next(iter(failing), None)
    if worst is None:
        return (change.services or [""])[0], None
    return worst.service, worst.route or None


def _shift_signal(shift: RouteShift) -> Signal:
    return Signal(
        kind=SignalKind.SHIFT,
        source_id=shift.pk,
        service=shift.service,
        environment="",
        at=shift.detected_at,
        title=f"{shift.service}: {shift.route} regressed between deploys",
        summary=f"Route shift: {shift_summary(shift)}",
        link=url(f"/services/{shift.service}/"),
        severity=Severity.SEV3,
        watch={
            "service": shift.service,
            "route": shift.route,
            "metric": shift.metric,
            "threshold": (shift.baseline_value + shift.current_value) / 2,
        },  # fmt: skip
    )


def shift_summary(shift: RouteShift) -> str:
    return route_watch.describe(shift)


def first_line(text: str, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _baseline_error_rate(service: str, before: datetime, *, route: str | None = None) -> float:
    start = before - timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    points = rollups.latency_series(service, start=start, end=before, route=route)
    requests = sum(p.requests for p in points)
    return sum(p.errors for p in points) / requests if requests else 0.0


# State of recorded signals.


def closed_at(kind: str, source_id: int) -> datetime | None:
    """When the signal stopped: the alert resolved, the shift closed, the bad version left."""
    if kind == SignalKind.ALERT:
        return Alert.objects.filter(pk=source_id).values_list("resolved_at", flat=True).first()
    if kind == SignalKind.SHIFT:
        return RouteShift.objects.filter(pk=source_id).values_list("resolved_at", flat=True).first()
    if kind == SignalKind.FLAG_VERDICT:
        change = FlagChange.objects.filter(pk=source_id).first()
        later = recovering_flag_change(change) if change else None
        return later.at if later else None
    deploy = Deployment.objects.filter(pk=source_id).first()
    recovery = recovering_change(deploy) if deploy else None
    return recovery.deployed_at if recovery else None


def recovering_change(deploy: Deployment) -> Deployment | None:
    """The next deploy of the service that replaced a failed one and did not fail itself."""
    return (
        Deployment.objects.for_service(deploy.service, deploy.environment)
        .filter(started_at__gt=deploy.started_at)
        .exclude(verdict=Verdict.FAIL)
        .exclude(pk=deploy.pk)
        .order_by("started_at", "id")
        .first()
    )


def recovering_flag_change(change: FlagChange) -> FlagChange | None:
    """The next change of the flag (a revert, a narrowing, a fix) that did not fail itself."""
    return (
        FlagChange.objects.filter(flag=change.flag, at__gt=change.at)
        .exclude(verdict=Verdict.FAIL)
        .order_by("at", "id")
        .first()
    )


def minute_series(watch: dict, start: datetime, end: datetime) -> list[MinuteCounts]:
    """Bad and total per minute of what a signal watches, in [start, end)."""
    if "slo_id" in watch:
        slo = SLO.objects.get(pk=watch["slo_id"])
        rows = slo_status.minute_series(slo, start, end)
        return [MinuteCounts(minute, bad, total) for minute, bad, total in rows]
    points = rollups.latency_series(watch["service"], start=start, end=end, route=watch["route"])
    if watch["metric"] == "error_rate":
        return [MinuteCounts(p.minute, p.errors, p.requests) for p in points]
    # Latency: a minute is bad as a whole when its p95 is above the threshold.
    return [
        MinuteCounts(p.minute, float(p.p95_ms > watch["threshold"]), 1.0)
        for p in points
        if p.requests and p.p95_ms is not None
    ]


def series_threshold(watch: dict) -> float:
    """The bad share above which a minute burns: latency minutes are all-or-nothing."""
    return 0.5 if watch.get("metric") == "latency_p95" else watch["threshold"]


# Around an incident.


def deploys_of(
    services: list[str], start: datetime, end: datetime, *, also: list[int] = ()
) -> list[Deployment]:
    """Deploys of the services in [start, end), and the deploys `also` names wherever they are."""
    in_range = Q(service__in=services, started_at__gte=start, started_at__lt=end)
    return list(Deployment.objects.filter(in_range | Q(pk__in=also)).order_by("started_at", "id"))


def alerts_of(services: list[str], start: datetime, end: datetime) -> list[Alert]:
    """Alerts of the services' SLOs that fired in [start, end) or were still firing at start."""
    return list(
        Alert.objects.filter(slo__service__in=services, fired_at__lt=end)
        .exclude(resolved_at__lt=start)
        .select_related("slo")
        .order_by("fired_at", "id")
    )


def shifts_of(services: list[str], start: datetime, end: datetime) -> list[RouteShift]:
    return list(
        RouteShift.objects.filter(service__in=services, detected_at__lt=end)
        .exclude(resolved_at__lt=start)
        .order_by("detected_at", "id")
    )


def flag_changes_of(services: list[str], start: datetime, end: datetime, *,
                    also: list[int] = ()) -> list[FlagChange]:  # fmt: skip
    """Changes of flags the services evaluate in [start, end), and those `also` names."""
    in_range = Q(at__gte=start, at__lt=end) & _evaluated_by(services)
    return list(FlagChange.objects.filter(in_range | Q(pk__in=also)).order_by("at", "id"))


def _evaluated_by(services: list[str]) -> Q:
    query = Q(pk__in=[])
    for service in services:
        query |= Q(services__contains=[service])
    return query


def flag_verdict_records_of(changes: list[FlagChange]):
    return FlagVerdictRecord.objects.filter(change__in=changes).select_related("change")


def slos_of(services: list[str]) -> list[SLO]:
    return list(SLO.objects.filter(service__in=services).order_by("name"))


def verdict_records_of(deploys: list[Deployment]):
    return VerdictRecord.objects.filter(deployment__in=deploys).select_related("deployment")


def suspects_of(signals) -> list[dict]:
    """The ranked change events of the incident's signals, best first, each change once.

    A failed deploy or rollout is its own first suspect; then the suspects
    deployments ranked (deploys and flag changes alike) for each alert,
    shift, failed deploy and failed rollout.
    """
    ranked: dict[tuple[str, int], dict] = {}
    for signal in signals:
        if signal.kind == SignalKind.VERDICT:
            own = _deploy_suspect(Deployment.objects.get(pk=signal.source_id), 1.0,
                                  "failed its verdict")  # fmt: skip
            ranked.setdefault(("deploy", signal.source_id), own)
        elif signal.kind == SignalKind.FLAG_VERDICT:
            change = FlagChange.objects.get(pk=signal.source_id)
            own = _flag_suspect(change.pk, change.flag, change.at, change.link(), 1.0,
                                "its rollout failed its verdict")  # fmt: skip
            ranked.setdefault(("flag", signal.source_id), own)
    rows = (
        Suspect.objects.select_related("suspect")
        .filter(_suspect_filter(signals))
        .order_by("-score", "rank")
    )
    for row in rows:
        key = ("deploy", row.suspect_id) if row.is_deploy else (row.suspect_kind,
                                                               row.suspect_change_id)  # fmt: skip
        if key not in ranked:
            ranked[key] = _row_suspect(row)
    out = sorted(ranked.values(), key=lambda s: -s["score"])
    return [{**entry, "rank": index + 1} for index, entry in enumerate(out)]


def _suspect_filter(signals):
    query = Q(pk__in=[])
    for signal in signals:
        if signal.kind == SignalKind.ALERT:
            query |= Q(alert_id=signal.source_id)
        elif signal.kind == SignalKind.SHIFT:
            query |= Q(route_shift_id=signal.source_id)
        elif signal.kind == SignalKind.FLAG_VERDICT:
            query |= Q(change_kind=flag_suspects.KIND, change_id=signal.source_id)
        else:
            query |= Q(deployment_id=signal.source_id)
    return query


def _row_suspect(row: Suspect) -> dict:
    if row.is_deploy:
        return _deploy_suspect(row.suspect, row.score, row.evidence)
    name = row.suspect_label.removeprefix(f"{row.suspect_kind} ")
    return _flag_suspect(row.suspect_change_id, name, row.suspect_at, row.suspect_link,
                         row.score, row.evidence)  # fmt: skip


def _deploy_suspect(deploy: Deployment, score: float, evidence: str) -> dict:
    return {
        "kind": "deploy",
        "deployment_id": deploy.pk,
        "flag_change_id": None,
        "service": deploy.service,
        "version": deploy.version,
        "started_at": deploy.started_at.isoformat(),
        "score": round(score, 4),
        "evidence": evidence,
        "link": url(f"/deploys/{deploy.pk}/"),
    }


def _flag_suspect(change_id: int, flag: str, at, link: str, score: float, evidence: str) -> dict:
    # Named as pages name a deploy, "flag new-checkout" for "payments v5".
    return {
        "kind": "flag",
        "deployment_id": None,
        "flag_change_id": change_id,
        "service": "flag",
        "version": flag,
        "started_at": at.isoformat() if at else None,
        "score": round(score, 4),
        "evidence": evidence,
        "link": link,
    }


def connected_services(service: str, start: datetime, end: datetime) -> set[str]:
    """Services sharing traces with the service's requests in [start, end): callers, callees."""
    roots = spans.sample_requests(service, start, end, limit=SAMPLED_TRACES)
    if not roots:
        return set()
    shared = spans.trace_spans([root.trace_id for root in roots], start, end)
    return {span.service for span in shared} - {service}


def slo_bad_series(slo: SLO, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Bad units per minute of an SLO in [start, end): events, or whole minutes for timeslices."""
    return [(minute, bad) for minute, bad, _ in slo_status.minute_series(slo, start, end)]


def slo_budget_total(slo: SLO, *, now: datetime) -> float:
    """The SLO's whole error budget over its window, in its units."""
    return slo_status.status(slo, now=now, history=False).budget_total


def slow_threshold_ms(service: str) -> float:
    """Slow means above the service's tightest latency SLO, else MONOENV_INCIDENT_SLOW_MS."""
    thresholds = SLO.objects.filter(service=service, sli=SLI.LATENCY).values_list(
        "threshold_ms", flat=True
    )
    found = [float(t) for t in thresholds if t is not None]
    return min(found) if found else float(settings.MONOENV_INCIDENT_SLOW_MS)


def request_impact(service: str, start: datetime, end: datetime) -> spans.RequestImpact:
    return spans.request_impact(
        spans.RequestFilter(service=service, start=start, end=end),
        slow_ms=slow_threshold_ms(service),
    )


def significant_findings(deploy_ids: list[int]) -> list:
    """The significant findings behind each deploy's current verdict."""
    deploys = Deployment.objects.filter(pk__in=deploy_ids).order_by("pk")
    return [
        finding
        for deploy in deploys
        for finding in deploy.latest_findings(significant_only=True)
        .select_related("deployment")
        .order_by("route", "metric")
    ]
