"""DORA metrics kept incrementally: one ChangeOutcome per deploy, summed on request.

The poll rewrites the outcomes that may have changed: deploys of the last
RECENT_DAYS, deploys of services with an incident changed in the last hour,
and failed deploys not yet recovered. Nothing here reads spans: only deploys,
their verdicts and rollbacks (deployments) and incidents (this app).
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Q

from deployments.models import Deployment, DeployStatus
from incidents import dora
from incidents.models import ChangeOutcome, Incident, IncidentSignal, SignalKind

RECENT_DAYS = 2
# How far after a change its recovering change or blaming incident may come.
FOLLOW_DAYS = 30
BATCH = 2000
DELIVERED = (DeployStatus.SUCCEEDED, DeployStatus.ROLLED_BACK)


def refresh_recent(*, now: datetime) -> int:
    recent = now - timedelta(days=RECENT_DAYS)
    ids = set(Deployment.objects.filter(started_at__gte=recent).values_list("pk", flat=True))
    ids |= set(
        ChangeOutcome.objects.filter(
            failed=True, recovery_seconds__isnull=True,
            finished_at__gte=now - timedelta(days=FOLLOW_DAYS),
        ).values_list("deployment_id", flat=True)
    )  # fmt: skip
    for incident in Incident.objects.filter(updated_at__gte=now - timedelta(hours=1)):
        ids |= set(
            Deployment.objects.filter(
                service__in=incident.services,
                started_at__gte=incident.started_at - timedelta(days=1),
                started_at__lte=incident.resolved_at or now,
            ).values_list("pk", flat=True)
        )
        if incident.top_suspect_id:
            ids.add(incident.top_suspect_id)
    return refresh(sorted(ids))


def rebuild_all() -> int:
    ids = list(Deployment.objects.order_by("pk").values_list("pk", flat=True))
    return sum(refresh(ids[i : i + BATCH]) for i in range(0, len(ids), BATCH))


def refresh(deploy_ids: list[int]) -> int:
    """Recompute and store the outcome of each of these deploys."""
    if not deploy_ids:
        return 0
    changes = [_change(d) for d in Deployment.objects.filter(pk__in=deploy_ids)]
    services = {c.service for c in changes}
    first = min(c.started_at for c in changes)
    last = max(c.started_at for c in changes) + timedelta(days=FOLLOW_DAYS)
    later_by_line = _changes_by_line(services, first, last)
    spans = incident_spans(services, first - timedelta(days=1), last)
    outcomes = []
    for change in changes:
        line = later_by_line[(change.service, change.environment)]
        later = [c for c in line if c.started_at > change.started_at and c.id != change.id]
        relevant = [i for i in spans if change.service in i.services or change.id in i.blamed]
        outcomes.append(dora.outcome(change, later=later, incidents=relevant))
    ChangeOutcome.objects.bulk_create(
        [_row(o) for o in outcomes], update_conflicts=True, unique_fields=["deployment"],
        update_fields=[
            "service", "environment", "finished_at", "delivered", "is_rollback",
            "lead_time_seconds", "failed", "failed_because", "recovery_seconds", "rework",
            "refreshed_at",
        ],
    )  # fmt: skip
    return len(outcomes)


def _change(deploy: Deployment) -> dora.Change:
    return dora.Change(
        id=deploy.pk, service=deploy.service, environment=deploy.environment,
        started_at=deploy.started_at, finished_at=deploy.finished_at,
        commit_time=deploy.commit_time, delivered=deploy.status in DELIVERED,
        is_rollback=deploy.rollback_of_id is not None,
        rolled_back=deploy.status == DeployStatus.ROLLED_BACK, verdict=deploy.verdict,
    )  # fmt: skip


def _changes_by_line(services, start, end) -> dict[tuple[str, str], list[dora.Change]]:
    by_line = defaultdict(list)
    rows = Deployment.objects.filter(
        service__in=services, started_at__gte=start, started_at__lte=end
    ).order_by("started_at", "id")
    for deploy in rows:
        by_line[(deploy.service, deploy.environment)].append(_change(deploy))
    return by_line


def incident_spans(services, start: datetime, end: datetime) -> list[dora.IncidentSpan]:
    incidents = list(
        Incident.objects.filter(
            Q(services__overlap=list(services)) | Q(top_suspect__service__in=services),
            detected_at__lte=end,
        ).filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=start))
    )
    blamed = defaultdict(set)
    for incident in incidents:
        if incident.top_suspect_id:
            blamed[incident.pk].add(incident.top_suspect_id)
    for incident_id, deploy_id in IncidentSignal.objects.filter(
        incident__in=incidents, kind=SignalKind.VERDICT
    ).values_list("incident_id", "source_id"):
        blamed[incident_id].add(deploy_id)
    return [
        dora.IncidentSpan(
            services=frozenset(i.services), detected_at=i.detected_at,
            mitigated_at=i.effective_mitigated_at, resolved_at=i.resolved_at,
            blamed=frozenset(blamed[i.pk]),
        )  # fmt: skip
        for i in incidents
    ]


def _row(o: dora.Outcome) -> ChangeOutcome:
    return ChangeOutcome(
        deployment_id=o.id, service=o.service, environment=o.environment,
        finished_at=o.finished_at, delivered=o.delivered, is_rollback=o.is_rollback,
        lead_time_seconds=o.lead_time_seconds, failed=o.failed, failed_because=o.failed_because,
        recovery_seconds=o.recovery_seconds, rework=o.rework,
    )  # fmt: skip


# Reads for the API and the Delivery page.

OUTCOME_FIELDS = (
    "deployment_id", "service", "environment", "finished_at", "delivered", "is_rollback",
    "lead_time_seconds", "failed", "failed_because", "recovery_seconds", "rework",
)  # fmt: skip


def outcomes(*, start: datetime, end: datetime, service: str | None, environment: str | None):
    rows = ChangeOutcome.objects.filter(finished_at__gte=start, finished_at__lt=end)
    if service:
        rows = rows.filter(service=service)
    if environment:
        rows = rows.filter(environment=environment)
    return [dora.Outcome(*values) for values in rows.values_list(*OUTCOME_FIELDS)]


def metrics(*, days: int, now: datetime, service: str | None = None,
            environment: str | None = None) -> dict:  # fmt: skip
    found = outcomes(start=now - timedelta(days=days), end=now, service=service,
                     environment=environment)  # fmt: skip
    return {"days": days, "service": service or "", "environment": environment or "",
            **dora.metrics(found, days=days, end=now)}  # fmt: skip


def per_service(*, days: int, now: datetime, environment: str | None = None) -> list[dict]:
    """One summary per service over the period, for the Delivery page's table."""
    found = outcomes(start=now - timedelta(days=days), end=now, service=None,
                     environment=environment)  # fmt: skip
    by_service = defaultdict(list)
    for o in found:
        by_service[o.service].append(o)
    return [
        {"service": name, **dora.summary(rows, days=days)}
        for name, rows in sorted(by_service.items())
    ]
