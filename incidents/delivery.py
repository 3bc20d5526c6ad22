"""DORA metrics kept incrementally: one ChangeOutcome per deploy, summed on request.

The poll rewrites the outcomes that may have changed: deploys of the last
RECENT_DAYS, deploys of services with an incident changed in the last hour,
and failed deploys not yet recovered. Flag changes are few next to deploys:
their figures are read from the changes of the period (flags), their
verdicts and the incidents that blamed them, on each request. Nothing here
reads spans: only deploys, their verdicts and rollbacks (deployments), flag
changes (flags) and incidents (this app).
"""

import bisect
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from deployments.models import Deployment, DeployStatus
from flags.models import FlagChange
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
    around = Q(pk__in=[])
    for incident in Incident.objects.filter(updated_at__gte=now - timedelta(hours=1)):
        around |= Q(
            service__in=incident.services,
            started_at__gte=incident.started_at - timedelta(days=1),
            started_at__lte=incident.resolved_at or now,
        )
        if incident.top_suspect_id:
            ids.add(incident.top_suspect_id)
    ids |= set(Deployment.objects.filter(around).values_list("pk", flat=True))
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
    starts = {line: [c.started_at for c in changes] for line, changes in later_by_line.items()}
    by_service, by_blamed = defaultdict(list), defaultdict(list)
    for span in incident_spans(services, first - timedelta(days=1), last):
        for name in span.services:
            by_service[name].append(span)
        for deploy_id in span.blamed:
            by_blamed[deploy_id].append(span)
    outcomes = []
    for change in changes:
        line = (change.service, change.environment)
        after = bisect.bisect_right(starts[line], change.started_at)
        later = [c for c in later_by_line[line][after:] if c.id != change.id]
        relevant = {id(s): s for s in (*by_service[change.service], *by_blamed[change.id])}
        outcomes.append(dora.outcome(change, later=later, incidents=list(relevant.values())))
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


# Reads for the API and the Delivery page: one query, grouped in SQL.

_TOTALS_SQL = """
SELECT GROUPING(week), GROUPING(service), week, service,
  count(*) FILTER (WHERE delivered),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY lead_time_seconds) FILTER (WHERE delivered),
  percentile_cont(0.9) WITHIN GROUP (ORDER BY lead_time_seconds) FILTER (WHERE delivered),
  count(lead_time_seconds) FILTER (WHERE delivered),
  count(*) FILTER (WHERE delivered AND failed),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY recovery_seconds) FILTER (WHERE delivered AND failed),
  percentile_cont(0.9) WITHIN GROUP (ORDER BY recovery_seconds) FILTER (WHERE delivered AND failed),
  count(recovery_seconds) FILTER (WHERE delivered AND failed),
  count(*) FILTER (WHERE delivered AND rework)
FROM (
  SELECT *, floor(extract(epoch FROM (%s - finished_at)) / 604800)::int AS week
  FROM incidents_changeoutcome WHERE finished_at >= %s AND finished_at < %s{where}
) AS outcomes
GROUP BY GROUPING SETS ((), (week), (service))
"""


def _totals(*, start, end, service, environment):
    """(overall totals, totals per week index counted back from end, totals per service)."""
    where, params = "", []
    if service:
        where, params = where + " AND service = %s", [*params, service]
    if environment:
        where, params = where + " AND environment = %s", [*params, environment]
    return _run(_TOTALS_SQL.format(where=where), [end, start, end, *params])


def _run(sql, params):
    overall, by_week, by_service = dora.Totals(), {}, {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for no_week, no_service, week, service, *sums in rows:
        totals = dora.Totals(*(value if value is None else type_(value)
                               for value, type_ in zip(sums, _SUM_TYPES, strict=True)))
        if no_week and no_service:
            overall = totals
        elif not no_week:
            by_week[week] = totals
        else:
            by_service[service] = totals
    return overall, by_week, by_service


_SUM_TYPES = (int, float, float, int, int, float, float, int, int)


def metrics(*, days: int, now: datetime, service: str | None = None,
            environment: str | None = None) -> dict:  # fmt: skip
    return page(days=days, now=now, service=service, environment=environment)[0]


def per_service(*, days: int, now: datetime, environment: str | None = None) -> list[dict]:
    return page(days=days, now=now, service=None, environment=environment, per_service=True)[1]


def flag_change_facts(*, start: datetime, end: datetime, service: str | None,
                      environment: str | None) -> list[dora.FlagChangeFacts]:  # fmt: skip
    """The flag changes of [start, end): their verdicts, reverts and blame."""
    rows = FlagChange.objects.filter(at__gte=start, at__lt=end)
    if service:
        rows = rows.filter(services__contains=[service])
    if environment:
        rows = rows.filter(environment__in=[environment, ""])
    changes = list(rows.order_by("at", "id"))
    blamed = set(Incident.objects.filter(top_flag_change__in=[c.pk for c in changes])
                 .values_list("top_flag_change_id", flat=True))  # fmt: skip
    following = _next_changes(changes, until=end + timedelta(days=FOLLOW_DAYS))
    return [
        dora.FlagChangeFacts(
            id=c.pk, at=c.at, verdict=c.verdict, blamed=c.pk in blamed,
            reverted=dora.reverted(c.shares_before, _shares_after(following.get(c.pk))),
        )  # fmt: skip
        for c in changes
    ]


def _next_changes(changes: list[FlagChange], *, until: datetime) -> dict[int, FlagChange]:
    """Each change's next change of the same flag, by the change's id."""
    if not changes:
        return {}
    flags = {c.flag for c in changes}
    later = FlagChange.objects.filter(flag__in=flags, at__gte=changes[0].at, at__lt=until)
    by_flag = defaultdict(list)
    for change in later.order_by("at", "id"):
        by_flag[change.flag].append(change)
    following = {}
    for line in by_flag.values():
        for change, after in zip(line, line[1:], strict=False):
            following[change.pk] = after
    return following


def _shares_after(change: FlagChange | None) -> dict[str, float] | None:
    """What a change set the shares to: measured when detected, else its posted rollout."""
    if change is None:
        return None
    if change.shares_after:
        return change.shares_after
    total = sum(change.rollout.values())
    return {k: v / total for k, v in change.rollout.items()} if total else None


def page(*, days: int, now: datetime, service: str | None, environment: str | None,
         per_service: bool = False) -> tuple[dict, list[dict]]:  # fmt: skip
    """The /api/v1/dora figures, and (if asked) one summary per service, from one query."""
    start = now - timedelta(days=days)
    overall, by_week, by_service = _totals(
        start=start, end=now, service=service, environment=environment
    )
    flags = flag_change_facts(start=start, end=now, service=service, environment=environment)
    figures = {
        "days": days, "service": service or "", "environment": environment or "",
        **dora.summary(overall, days=days),
        "flag_changes": dora.flag_summary(flags, days=days),
        "weekly": dora.weekly(by_week, start=start, end=now, flags=flags),
    }  # fmt: skip
    table = [{"service": name, **dora.summary(totals, days=days)}
             for name, totals in sorted(by_service.items())] if per_service else []  # fmt: skip
    return figures, table
