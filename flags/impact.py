"""The error budget each variant's cohort spent since a flag change, per SLO of its services.

Every figure is a share of the SLO's whole-window budget as slo's status
states it (slo.status.statuses: the same budget, in the same units, as the
budgets page shows), so a cohort's share is part of the window's used share:
- occurrences: the cohort's own bad requests since the change (or the
  window's start, if later), counted by the SLO's selection and good rule
  from the flag's attributed requests (telemetry.flag_store.cohort_bad_counts);
- timeslices: a bad minute belongs to no single request, so the SLO's bad
  minutes since the change (slo.status.minute_series) are shared out by each
  cohort's share of the selection's bad requests in that time
  (telemetry.spans.bad_count), as slo shares a deploy's version budget use.
Requests that did not evaluate the flag belong to no cohort: the cohorts'
shares add up to at most the window's used share.
"""

from dataclasses import dataclass
from datetime import datetime

from flags.models import FlagChange
from slo import status as slo_status
from slo.models import SLO, Budgeting
from telemetry import flag_store, spans


@dataclass(frozen=True)
class CohortUse:
    service: str
    variant: str
    slo: SLO
    status: slo_status.Status
    requests: int
    bad: float  # bad units charged to the cohort: events, or (shares of) minutes
    since: datetime

    @property
    def consumed_pct(self) -> float | None:
        if not self.status.budget_total:
            return None
        return 100 * self.bad / self.status.budget_total


def cohort_uses(change: FlagChange, *, now: datetime) -> list[CohortUse]:
    """For each service of the change, each SLO of it and each cohort: the budget it spent."""
    uses = []
    for service in change.services:
        slos = [s for s in SLO.objects.for_service(service) if s.span_kind in spans.REQUEST_KINDS]
        found = slo_status.statuses(slos, now=now)
        for slo in slos:
            uses += _uses_of_slo(change, service, slo, found[slo.pk])
    return uses


def _uses_of_slo(change, service: str, slo: SLO, state: slo_status.Status) -> list[CohortUse]:
    start, end = max(change.at, state.window_start), state.window_end
    if start >= end:
        return []
    counts = flag_store.cohort_bad_counts(change.flag, slo.span_selection, slo.good_rule,
                                          start, end)  # fmt: skip
    charge = _timeslice_charge(slo, start, end) if slo.budgeting == Budgeting.TIMESLICES else None
    return [
        CohortUse(service=service, variant=cohort, slo=slo, status=state, requests=requests,
                  bad=bad if charge is None else charge * bad, since=start)  # fmt: skip
        for cohort, (requests, bad) in sorted(counts.items())
    ]


def _timeslice_charge(slo: SLO, start: datetime, end: datetime) -> float:
    """Bad minutes per bad request of the selection in [start, end): what each bad request costs."""
    bad_minutes = sum(bad for _, bad, _ in slo_status.minute_series(slo, start, end))
    bad_requests = spans.bad_count(slo.span_selection, slo.good_rule, start=start, end=end)
    return bad_minutes / bad_requests if bad_requests else 0.0


def budget_impact(change: FlagChange, *, now: datetime) -> list[dict]:
    """The API's and the flag page's rows: one per service, SLO and variant."""
    return [
        {
            "service": use.service,
            "variant": use.variant,
            "slo_id": use.slo.pk,
            "slo": use.slo.name,
            "objective": float(use.slo.objective),
            "window": use.slo.window,
            "unit": use.status.unit,
            "since": use.since.isoformat(),
            "requests": use.requests,
            "bad": round(use.bad, 3),
            "budget_total": use.status.budget_total,
            "budget_consumed_pct": use.consumed_pct,
            "window_consumed_pct": use.status.budget_consumed_pct,
            "budget_remaining_pct": use.status.budget_remaining_pct,
            "learning": use.status.learning,
        }
        for use in cohort_uses(change, now=now)
    ]
