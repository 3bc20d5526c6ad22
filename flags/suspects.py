"""Flag changes as suspects: in which flag's cohort a regression lives, ranked next to deploys.

deployments/suspects.py finds a regression's onset and ranks deploys; `rank`
here is the ranker it calls for flag changes (registered in flags/apps.py),
with the same regression and the same onset, so both kinds of change are
scored on one scale and listed in one order. The invariants:

- **Who can explain it.** The latest change of each flag made in the same
  window as a deploy must be (within the lookback before the onset, up to
  the end of the onset's minute and a little slack), of a flag the regressed
  service evaluates.
- **Evidence: the cohorts.** The regressed service's requests on the route
  after the onset are split by the cohort of the flag they evaluated
  (telemetry/flag_store.py). A cohort's *extra errors* are its errors minus
  what it would have had at the error rate of every other request of the
  route (the other cohorts, and requests that did not evaluate the flag).
  Its *share* is its extra errors over the route's own extra errors (its
  errors after the onset minus what its rate before predicts), within 0..1.
  A change's score is its flag's best cohort share, plus the tie-break of
  closeness to the onset.
- **Began it, or only hosts it.** A cohort that served, between the change
  and the onset, clearly fewer errors than its rate after the onset predicts
  (one-sided binomial, p < HEALTHY_P) was healthy under that change: the
  change did not begin the regression and scores the tie-break only. If such
  a cohort (or that of a flag not changed lately) holds CONCENTRATED of the
  extra errors, the regression still lives there, and the regressed
  service's own deploy says so in its evidence (OtherRanking.lives_in).
- What the flags' changes explain is not left to the regressed service's
  own deploy (OtherRanking.explains).

Errors only: a latency regression gives flag changes the tie-break, with
evidence saying so. `explain_failed_rollouts` ranks the suspects of each
failed rollout, for `GET /api/v1/flags/changes/{id}`; `for_change_listed`
is what that endpoint lists: the suspects other than the change itself.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from scipy import stats

from deployments import suspects
from deployments.models import Verdict
from deployments.suspects import Onset, OtherRanking, Ranked, Regression
from flags.models import FlagChange
from telemetry import flag_store, spans
from telemetry.flag_store import CohortFilter

KIND = "flag"
# A cohort holding this share of the extra errors is where the regression lives.
CONCENTRATED = 0.8
# Below this p, a cohort's errors between its change and the onset are too few
# for the rate it showed after: it was healthy under that change.
HEALTHY_P = 0.001
# The flags of the regressed service compared, most evaluated first.
MAX_FLAGS = 20
MAX_COHORTS = 12


@dataclass(frozen=True)
class Counts:
    requests: int = 0
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CohortShare:
    flag: str
    cohort: str
    share: float  # of the route's extra errors, 0..1
    after: Counts  # the cohort's requests after the onset


def rank(regression: Regression, onset: Onset) -> OtherRanking:
    """The flag changes that can explain the regression, and where it lives."""
    start, end = regression_window(regression, onset)
    routes = (regression.route,) if regression.route else ()
    after = _route_counts(regression.service, start, end, routes)
    before = _route_counts(regression.service, regression.baseline_start, start, routes)
    route_extra = after.errors - after.requests * before.rate
    best = {}
    if route_extra > 0:
        for flag in _flags_of(regression.service, start, end):
            found = best_cohort(flag, regression.service, start, end, routes,
                                route_after=after, route_extra=route_extra)  # fmt: skip
            if found is not None:
                best[flag] = found
    entries, began = [], set()
    for change in candidate_changes(regression.service, onset):
        entry, began_it = _score(change, best.get(change.flag), regression, onset, start, routes)
        entries.append(entry)
        if began_it:
            began.add(change.flag)
    explains = max((best[flag].share for flag in began), default=0.0)
    return OtherRanking(entries, lives_in=_lives_in(best, began, regression), explains=explains)


def regression_window(regression: Regression, onset: Onset) -> tuple[datetime, datetime]:
    """After the onset, as the deploys' evidence reads it; the window as given if none was found."""
    return (onset.at if onset.found else regression.start), regression.end


def _route_counts(service: str, start: datetime, end: datetime, routes) -> Counts:
    if end <= start:
        return Counts()
    counts = spans.route_counts(spans.RequestFilter(service, start, end, routes=routes))
    return Counts(sum(n for n, _ in counts.values()), sum(e for _, e in counts.values()))


def _flags_of(service: str, start: datetime, end: datetime) -> list[str]:
    seen = [f for f in flag_store.flags_seen(start, end) if service in f.services]
    seen.sort(key=lambda f: -sum(f.cohorts.values()))
    return [f.flag for f in seen[:MAX_FLAGS] if len(f.cohorts) <= MAX_COHORTS]


def cohort_counts(flag: str, service: str, start, end, routes, cohort: str) -> Counts:
    counts = flag_store.cohort_route_counts(
        CohortFilter(flag=flag, service=service, start=start, end=end, cohort=cohort,
                     routes=routes)
    )  # fmt: skip
    return Counts(sum(n for n, _ in counts.values()), sum(e for _, e in counts.values()))


def best_cohort(flag, service, start, end, routes, *, route_after: Counts,
                route_extra: float) -> CohortShare | None:  # fmt: skip
    """The cohort of the flag holding the largest share of the route's extra errors."""
    found = None
    for cohort in flag_store.cohort_counts(flag, start, end, services=(service,)):
        counts = cohort_counts(flag, service, start, end, routes, cohort)
        share = extra_share(counts, route_after, route_extra)
        if counts.requests and (found is None or share > found.share):
            found = CohortShare(flag, cohort, share, counts)
    return found


def extra_share(cohort: Counts, route: Counts, route_extra: float) -> float:
    """The cohort's errors beyond the rate of every other request, over the route's extra."""
    others = Counts(route.requests - cohort.requests, route.errors - cohort.errors)
    if others.requests <= 0 or route_extra <= 0:
        # Every request is in this cohort: the comparison is with the route before.
        return 1.0 if others.requests <= 0 and route_extra > 0 else 0.0
    extra = cohort.errors - cohort.requests * others.rate
    return min(1.0, max(0.0, extra / route_extra))


def candidate_changes(service: str, onset: Onset) -> list[FlagChange]:
    """The latest change of each flag of the service made in the window that can explain it."""
    earliest, cutoff = suspects.cause_window(onset)
    rows = FlagChange.objects.filter(at__gte=earliest, at__lt=cutoff).filter(
        Q(services__contains=[service]) | Q(services=[])
    ).order_by("flag", "-at", "-id")  # fmt: skip
    latest: dict[str, FlagChange] = {}
    for change in rows:
        latest.setdefault(change.flag, change)
    return list(latest.values())


def healthy_before(cohort: CohortShare, counts_before: Counts) -> bool:
    """Whether the cohort's errors before the onset are too few for its rate after."""
    if not counts_before.requests or cohort.after.rate <= 0:
        return False
    p = stats.binom.cdf(counts_before.errors, counts_before.requests, cohort.after.rate)
    return bool(p < HEALTHY_P)


def _score(change: FlagChange, cohort: CohortShare | None, regression: Regression,
           onset: Onset, start: datetime, routes) -> tuple[Ranked, bool]:  # fmt: skip
    """The change's entry, and whether it began the regression."""
    tie_break = suspects.tie_break(onset, change.at)
    ago = suspects.ago_text(onset, change.at)
    where = regression.route or regression.service

    def entry(score: float, evidence: str) -> Ranked:
        return Ranked(None, score, evidence, onset_at=onset.at if onset.found else None,
                      kind=KIND, change_id=change.pk, label=f"flag {change.flag}",
                      link=change.link(), at=change.at)  # fmt: skip

    if cohort is None:
        evidence = (f"{change.flag} changed {ago}; no request of {where} with extra errors "
                    "evaluated it after the regression began.")  # fmt: skip
        return entry(tie_break, evidence), False
    held = f"{cohort.share:.0%} of the extra errors on {where} are in requests with " \
           f"{cohort.flag}={cohort.cohort}"  # fmt: skip
    if cohort.share < CONCENTRATED / 2:
        return entry(cohort.share + tie_break,
                     f"{change.flag} changed {ago}; at most {held}."), False  # fmt: skip
    before = cohort_counts(change.flag, regression.service,
                           max(change.at, regression.baseline_start), start, routes,
                           cohort.cohort)  # fmt: skip
    if healthy_before(cohort, before):
        evidence = (
            f"{held}, but that cohort served {before.requests} requests with {before.errors} "
            f"errors from the change until the regression began: {change.flag} changed {ago} "
            "and did not begin it."
        )
        return entry(tie_break, evidence), False
    return entry(cohort.share + tie_break, f"{held}; {change.flag} changed {ago}."), True


def _lives_in(best: dict[str, CohortShare], began: set[str], regression: Regression) -> str:
    hosts = [c for flag, c in best.items() if flag not in began and c.share >= CONCENTRATED]
    if not hosts:
        return ""
    top = max(hosts, key=lambda c: c.share)
    where = regression.route or regression.service
    return (f"{suspects.LIVES_IN} {top.share:.0%} of the extra errors on {where} are in "
            f"requests with {top.flag}={top.cohort}.")  # fmt: skip


# The suspects of a failed rollout.


def regression_of(change: FlagChange, record) -> Regression:
    """A failing look's regression: its worst route, from the change to the look's end."""
    failing = list(record.findings.filter(significant=True).order_by("service", "route"))
    worst = next((f for f in failing if f.route), failing[0] if failing else None)
    service = worst.service if worst else (change.services or [""])[0]
    baseline = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    return Regression(service=service, route=worst.route if worst else "", start=change.at,
                      end=record.window_end, baseline_start=change.at - baseline,
                      began=change.at)  # fmt: skip


def explain_failed_rollouts(*, now: datetime | None = None) -> int:
    """Rank the suspects of each failed rollout whose latest failing look is not ranked yet."""
    now = now or timezone.now()
    explained = 0
    since = now - suspects.lookback()
    for change in FlagChange.objects.filter(verdict=Verdict.FAIL, evaluated_at__gte=since):
        record = change.verdict_records.filter(verdict=Verdict.FAIL).last()
        if record is None or not record.findings.filter(significant=True).exists():
            continue
        recorded = suspects.for_change(KIND, change.pk, show_all=True).shown
        if recorded and min(s.created_at for s in recorded) >= record.created_at:
            continue
        suspects.record_for_change(KIND, change.pk, regression_of(change, record))
        explained += 1
    return explained


def for_change_listed(change: FlagChange, *, show_all: bool = False) -> list:
    """The suspects of a rollout's regression that are not the flag itself, best first."""
    every = suspects.for_change(KIND, change.pk, show_all=True).shown
    others = [s for s in every if not (s.suspect_kind == KIND and s.suspect_change_id == change.pk)]
    return others if show_all else suspects.shown(others)
