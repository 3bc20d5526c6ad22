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
- Lead time is finish minus commit time. Medians and p90s interpolate
  linearly between the closest ranks (PostgreSQL's percentile_cont, numpy's
  default percentile).

Flag changes are releases too, counted next to deploys and never mixed into
their figures: a flag change *failed* when its rollout's verdict failed, it
was reverted (the flag's next change put every cohort's share back within
REVERT_TOLERANCE of what it was before), or it was the top suspect of an
incident.

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

DAY = 86400.0
# Shares within this of the ones before a change mean the next change undid it.
REVERT_TOLERANCE = 0.05


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


# Aggregation: incidents/delivery.py sums the outcomes in SQL into Totals.


@dataclass(frozen=True)
class Totals:
    """Sums over the delivered changes of a period; medians and p90s use linear interpolation."""

    deploys: int = 0
    lead_median: float | None = None
    lead_p90: float | None = None
    with_commit_time: int = 0
    failed: int = 0
    recovery_median: float | None = None
    recovery_p90: float | None = None
    recoveries: int = 0
    rework: int = 0


def summary(totals: Totals, *, days: float) -> dict:
    """The figures of /api/v1/dora, with each metric's level."""
    t = totals
    per_day = t.deploys / days
    rate = t.failed / t.deploys if t.deploys else None
    return {
        "deployment_frequency": {
            "deploys": t.deploys, "per_day": per_day, "per_week": per_day * 7,
            "level": frequency_level(per_day),
        },
        "lead_time": {
            "median_seconds": t.lead_median, "p90_seconds": t.lead_p90,
            "deploys_with_commit_time": t.with_commit_time,
            "deploys_without_commit_time": t.deploys - t.with_commit_time,
            "level": lead_time_level(t.lead_median),
        },
        "change_fail_rate": {
            "failed": t.failed, "deploys": t.deploys, "rate": rate,
            "level": fail_rate_level(rate),
        },
        "recovery_time": {
            "median_seconds": t.recovery_median, "p90_seconds": t.recovery_p90,
            "recoveries": t.recoveries, "unrecovered": t.failed - t.recoveries,
            "level": recovery_level(t.recovery_median),
        },
        "rework_rate": {
            "rework": t.rework, "deploys": t.deploys,
            "rate": t.rework / t.deploys if t.deploys else None,
        },
    }  # fmt: skip


WEEK = timedelta(days=7)


def week_count(start: datetime, end: datetime) -> int:
    return max(1, -(-(end - start) // WEEK))  # ceiling division


def weekly(by_week: dict[int, Totals], *, start: datetime, end: datetime,
           flags: "list[FlagChangeFacts]" = ()) -> list[dict]:  # fmt: skip
    """Seven-day buckets ending at `end` (the oldest may be shorter), oldest first.

    by_week maps a bucket's index, counted back from `end` (0 is the newest), to its totals.
    """
    flag_weeks: dict[int, list] = {}
    for change in flags:
        flag_weeks.setdefault(week_index(change.at, end=end), []).append(change)
    weeks = []
    for index in reversed(range(week_count(start, end))):
        bucket_end = end - WEEK * index
        bucket_start = max(start, bucket_end - WEEK)
        t = by_week.get(index, Totals())
        weeks.append({
            "start": bucket_start.isoformat(), "end": bucket_end.isoformat(),
            "deploys": t.deploys, "failed": t.failed,
            "change_fail_rate": t.failed / t.deploys if t.deploys else None,
            "lead_time_median_seconds": t.lead_median,
            "recovery_median_seconds": t.recovery_median, "rework": t.rework,
            "flag_changes": len(flag_weeks.get(index, [])),
            "flag_changes_failed": sum(1 for c in flag_weeks.get(index, []) if c.failed),
        })  # fmt: skip
    return weeks


# Flag changes, next to deploys.


@dataclass(frozen=True)
class FlagChangeFacts:
    id: int
    at: datetime
    verdict: str
    reverted: bool
    blamed: bool  # the top suspect of an incident

    @property
    def failed(self) -> bool:
        return self.verdict == "fail" or self.reverted or self.blamed


def reverted(before: dict[str, float], next_after: dict[str, float] | None) -> bool:
    """Whether the next change's shares are those before this one, cohort by cohort."""
    if not before or not next_after:
        return False
    cohorts = set(before) | set(next_after)
    return all(abs(before.get(c, 0.0) - next_after.get(c, 0.0)) <= REVERT_TOLERANCE
               for c in cohorts)  # fmt: skip


def flag_summary(changes: list[FlagChangeFacts], *, days: float) -> dict:
    """Flag changes as releases: how often, and the share that failed."""
    failed = sum(1 for c in changes if c.failed)
    per_day = len(changes) / days
    return {
        "changes": len(changes), "per_day": per_day, "per_week": per_day * 7,
        "failed": failed, "rate": failed / len(changes) if changes else None,
        "failed_verdict": sum(1 for c in changes if c.verdict == "fail"),
        "reverted": sum(1 for c in changes if c.reverted),
        "blamed": sum(1 for c in changes if c.blamed),
    }  # fmt: skip


def week_index(at: datetime, *, end: datetime) -> int:
    """The seven-day bucket, counted back from `end` (0 is the newest)."""
    return int((end - at) // WEEK)


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
