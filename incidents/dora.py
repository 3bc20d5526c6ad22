"""DORA's five software delivery metrics, from change outcomes. Pure: no Django.

A change is one deploy. It *reached production* (delivered) when it
succeeded, even if it was rolled back later; rollbacks are changes too, and
every denominator counts them.

- A change *failed* when its verdict failed, it was rolled back, or an
  incident blamed it (its top suspect, or the failed verdict that opened it).
- Its *recovery* runs from its started_at to the earlier of the mitigation of
  an incident that blamed it and the finish of the next delivered change of
  its service and environment that did not fail its verdict.
- A change is *rework* when it is a rollback, or was delivered to a service of
  an incident after the incident was detected and before it was resolved,
  without being blamed by it.
- Lead time is finish minus commit time; p90 is numpy's percentile (linear
  interpolation between the closest ranks).

Levels follow the Accelerate State of DevOps Report 2024 (DORA, Google Cloud),
whose clusters are: elite (on demand, lead time under a day, change fail rate
5%, recovery under an hour), high (daily to weekly, a day to a week, 20%, under
a day), medium (weekly to monthly, a week to a month, 10%, under a day) and low
(monthly to every six months, one to six months, 40%, a week to a month).
Applied to one metric at a time (see docs/incidents.md for the two places
where the clusters overlap and how they are read here).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

DAY = 86400.0


@dataclass(frozen=True)
class Change:
    id: int
    service: str
    environment: str
    started_at: datetime
    finished_at: datetime
    commit_time: datetime | None
    delivered: bool
    is_rollback: bool
    rolled_back: bool
    verdict: str


@dataclass(frozen=True)
class IncidentSpan:
    services: frozenset[str]
    detected_at: datetime
    mitigated_at: datetime | None
    resolved_at: datetime | None
    blamed: frozenset[int]


@dataclass(frozen=True)
class Outcome:
    id: int
    service: str
    environment: str
    finished_at: datetime
    delivered: bool
    is_rollback: bool
    lead_time_seconds: float | None
    failed: bool
    failed_because: str
    recovery_seconds: float | None
    rework: bool


def outcome(change: Change, *, later: list[Change], incidents: list[IncidentSpan]) -> Outcome:
    """What became of one change; `later`: the later changes of its service and environment."""
    blaming = [i for i in incidents if change.id in i.blamed]
    reasons = [
        reason
        for reason, applies in (
            ("verdict", change.verdict == "fail"),
            ("rollback", change.rolled_back),
            ("incident", bool(blaming)),
        )
        if applies
    ]
    failed = change.delivered and bool(reasons)
    lead = None
    if change.delivered and change.commit_time is not None:
        lead = max(0.0, (change.finished_at - change.commit_time).total_seconds())
    return Outcome(
        id=change.id, service=change.service, environment=change.environment,
        finished_at=change.finished_at, delivered=change.delivered,
        is_rollback=change.is_rollback, lead_time_seconds=lead, failed=failed,
        failed_because=",".join(reasons) if failed else "",
        recovery_seconds=_recovery(change, later, blaming) if failed else None,
        rework=change.delivered and _rework(change, incidents),
    )  # fmt: skip


def _recovery(change: Change, later: list[Change], blaming: list[IncidentSpan]) -> float | None:
    ends = [i.mitigated_at for i in blaming if i.mitigated_at is not None]
    recovering = next(
        (c for c in later
         if c.delivered and c.verdict != "fail" and c.started_at > change.started_at),
        None,
    )
    if recovering is not None:
        ends.append(recovering.finished_at)
    ends = [end for end in ends if end >= change.started_at]
    return (min(ends) - change.started_at).total_seconds() if ends else None


def _rework(change: Change, incidents: list[IncidentSpan]) -> bool:
    if change.is_rollback:
        return True
    return any(
        change.service in i.services
        and change.id not in i.blamed
        and i.detected_at <= change.started_at
        and (i.resolved_at is None or change.started_at <= i.resolved_at)
        for i in incidents
    )


# Aggregation.


def median_p90(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.percentile(values, 50)), float(np.percentile(values, 90))


def metrics(outcomes: list[Outcome], *, days: int, end: datetime) -> dict:
    """The figures of /api/v1/dora over the `days` before `end`, with the weekly trend."""
    start = end - timedelta(days=days)
    inside = [o for o in outcomes if start <= o.finished_at < end]
    figures = summary(inside, days=days)
    figures["weekly"] = weekly(inside, start=start, end=end)
    return figures


def summary(outcomes: list[Outcome], *, days: float) -> dict:
    delivered = [o for o in outcomes if o.delivered]
    deploys = len(delivered)
    per_day = deploys / days
    leads = [o.lead_time_seconds for o in delivered if o.lead_time_seconds is not None]
    lead_median, lead_p90 = median_p90(leads)
    failed = [o for o in delivered if o.failed]
    recoveries = [o.recovery_seconds for o in failed if o.recovery_seconds is not None]
    recovery_median, recovery_p90 = median_p90(recoveries)
    rate = len(failed) / deploys if deploys else None
    rework = sum(o.rework for o in delivered)
    return {
        "deployment_frequency": {
            "deploys": deploys, "per_day": per_day, "per_week": per_day * 7,
            "level": frequency_level(per_day),
        },
        "lead_time": {
            "median_seconds": lead_median, "p90_seconds": lead_p90,
            "deploys_with_commit_time": len(leads),
            "deploys_without_commit_time": deploys - len(leads),
            "level": lead_time_level(lead_median),
        },
        "change_fail_rate": {
            "failed": len(failed), "deploys": deploys, "rate": rate,
            "level": fail_rate_level(rate),
        },
        "recovery_time": {
            "median_seconds": recovery_median, "p90_seconds": recovery_p90,
            "recoveries": len(recoveries), "unrecovered": len(failed) - len(recoveries),
            "level": recovery_level(recovery_median),
        },
        "rework_rate": {
            "rework": rework, "deploys": deploys, "rate": rework / deploys if deploys else None,
        },
    }  # fmt: skip


def weekly(outcomes: list[Outcome], *, start: datetime, end: datetime) -> list[dict]:
    """Seven-day buckets ending at `end` (the oldest may be shorter), oldest first."""
    weeks = []
    bucket_end = end
    while bucket_end > start:
        bucket_start = max(start, bucket_end - timedelta(days=7))
        inside = [o for o in outcomes if bucket_start <= o.finished_at < bucket_end]
        days = (bucket_end - bucket_start).total_seconds() / DAY
        figures = summary(inside, days=days)
        weeks.append({
            "start": bucket_start.isoformat(), "end": bucket_end.isoformat(),
            "deploys": figures["deployment_frequency"]["deploys"],
            "failed": figures["change_fail_rate"]["failed"],
            "change_fail_rate": figures["change_fail_rate"]["rate"],
            "lead_time_median_seconds": figures["lead_time"]["median_seconds"],
            "recovery_median_seconds": figures["recovery_time"]["median_seconds"],
            "rework": figures["rework_rate"]["rework"],
        })  # fmt: skip
        bucket_end = bucket_start
    return weeks[::-1]


# Levels (DORA 2024), one metric at a time.


def frequency_level(per_day: float) -> str:
    if per_day >= 1:
        return "elite"  # on demand: at least daily
    if per_day * 7 >= 1:
        return "high"  # between once a day and once a week
    if per_day * 30 >= 1:
        return "medium"  # between once a week and once a month
    return "low"


def lead_time_level(median_seconds: float | None) -> str | None:
    if median_seconds is None:
        return None
    if median_seconds < DAY:
        return "elite"
    if median_seconds <= 7 * DAY:
        return "high"
    if median_seconds <= 30 * DAY:
        return "medium"
    return "low"


def fail_rate_level(rate: float | None) -> str | None:
    # The report's medium cluster (10%) sits below high (20%); per metric, the
    # cluster values are read as ordered upper bounds: 5%, 20%, then 40%.
    if rate is None:
        return None
    if rate <= 0.05:
        return "elite"
    if rate <= 0.20:
        return "high"
    if rate <= 0.40:
        return "medium"
    return "low"


def recovery_level(median_seconds: float | None) -> str | None:
    # High and medium both recover "in less than one day"; low takes a week to
    # a month. Between a day and a week is read as medium.
    if median_seconds is None:
        return None
    if median_seconds < 3600:
        return "elite"
    if median_seconds < DAY:
        return "high"
    if median_seconds < 7 * DAY:
        return "medium"
    return "low"
