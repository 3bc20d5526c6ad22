"""What an incident cost: error budget per SLO, failed and slow requests, users, times.

Computed by the poll while the incident is active and once more when it is
resolved, then kept on the incident (Incident.impact), so pages never wait on it.
"""

from datetime import datetime, timedelta

from incidents import sources
from incidents.models import Incident

MAX_POINTS = 240
CHART_MARGIN = timedelta(minutes=30)


def compute(incident: Incident, *, now: datetime) -> dict:
    start, end = incident.started_at, incident.resolved_at or now
    requests = [_requests(service, start, end) for service in incident.services]
    return {
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "slos": [_budget(slo, start, end, now=now) for slo in sources.slos_of(incident.services)],
        "requests": requests,
        "failed_requests": sum(r["failed"] for r in requests),
        "slow_requests": sum(r["slow"] for r in requests),
        # Users are counted per service; one person hurt on two services counts twice.
        "affected_users": sum(r["affected_users"] for r in requests),
        **incident.times(now=now),
        "computed_at": now.isoformat(),
    }


def _requests(service: str, start: datetime, end: datetime) -> dict:
    found = sources.request_impact(service, start, end)
    return {
        "service": service,
        "requests": found.requests,
        "failed": found.failed,
        "slow": found.slow,
        "slow_threshold_ms": sources.slow_threshold_ms(service),
        "affected_users": found.affected_users,
    }


def _budget(slo, start: datetime, end: datetime, *, now: datetime) -> dict:
    """Budget consumed during [start, end), with a cumulative series for the burndown chart."""
    budget = sources.slo_budget_total(slo, now=now)
    series = sources.slo_bad_series(slo, start - CHART_MARGIN, end + CHART_MARGIN)
    bad = sum(units for minute, units in series if start <= minute < end)
    return {
        "slo_id": slo.pk,
        "slo": slo.name,
        "objective": float(slo.objective),
        "unit": "minutes" if slo.budgeting == "timeslices" else "events",
        "bad": bad,
        "budget_total": budget,
        "budget_consumed_pct": 100 * bad / budget if budget else None,
        "burn": _cumulative(series, budget),
    }


def _cumulative(series: list[tuple[datetime, int]], budget: float) -> list[list]:
    """[minute, budget consumed so far (%)], thinned to at most MAX_POINTS points."""
    points, consumed = [], 0
    for minute, units in series:
        consumed += units
        points.append([minute.isoformat(), 100 * consumed / budget if budget else None])
    step = max(1, len(points) // MAX_POINTS)
    thinned = points[::step]
    if points and thinned[-1] is not points[-1]:
        thinned.append(points[-1])
    return thinned
