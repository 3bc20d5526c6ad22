"""Flag changes as suspects: in which flag's cohort a regression lives, ranked next to deploys.

deployments/suspects.py finds a regression's onset and ranks deploys; `rank`
here is the ranker it calls for flag changes (registered in flags/apps.py),
with the same regression and the same onset, so both kinds of change are
scored on one scale and listed in one order. The invariants:

- **Who can explain it.** The latest change of each flag made in the same
  window as a deploy must be (within the lookback before the onset, up to
  the end of the onset's minute and a little slack), whose services name the
  regressed service, a service below it that is read (below), or none.
- **Evidence: the cohorts.** The regressed service's requests on the route
  after the onset are split by the cohort of the flag they evaluated
  (telemetry/flag_store.py). A cohort's *extra errors* are its errors minus
  what it would have had at the error rate of every other request of the
  route (the other cohorts, and requests that did not evaluate the flag).
  Its *share* is its extra errors over the route's own extra errors (its
  errors after the onset minus what its rate before predicts), within 0..1.
  When the onset is a change in latency (or errors did not rise), the same
  is done with ln(milliseconds) for errors, as deployments/changepoint.py
  models latency: the *extra time*. A change's score is its flag's best
  cohort share, plus the tie-break of closeness to the onset.
- **Evidence below: two shares chained.** A service below the regressed
  route (deployments/topology.py, through suspects.downstream_shares) that
  evaluates a flag is read the same way,
  in the same metric and times, on the routes it serves in the route's
  traces: its cohort's share of *its own* extra errors or time. The share of
  the regression is the product ("87% of the extra time on front GET /page
  is in back, and 98% of that in requests with stock-cache=on"), so a flag
  below never outscores that service's own share. Services below with less
  than EVIDENCE_MIN of it, or beyond the MAX_BELOW largest, are not read;
  nor are the traces when no flag is evaluated outside the regressed service.
  A flag read in both places keeps the larger product. The service's share
  is taken in the window's metric (its share of the extra errors, or of the
  extra time), so both shares chained are of the same metric.
- **Began it, or only hosts it.** A cohort that was, between the change and
  the onset, clearly better than after it (errors: too few for its rate
  after, one-sided binomial; latency: ln(ms) lower, one-sided Welch t-test;
  p < HEALTHY_P) was healthy under that change: the change did not begin
  the regression and scores the tie-break only. It is asked of a cohort
  holding at least CONCENTRATED / 2 of the extra errors or time where it is
  read (below: of that service's own, whatever that service's share); a
  smaller one scores its share ("at most …"). If such a cohort (or that of
  a flag not changed lately), here or below, holds CONCENTRATED of the extra
  errors or time (the product, below), the regression still lives there,
  and the regressed service's own deploy says so in its evidence
  (OtherRanking.lives_in).
- What the flags' changes that began it explain, here or below, is not
  left to the regressed service's own deploy (OtherRanking.explains), nor,
  below, to that service's deploy: OtherRanking.explains_below holds, for
  each service below, the largest share of its own extra errors or time
  held by such a cohort, and its deploy keeps, in that metric, its share
  × (1 − that) (or its share in the other metric, if larger). So
  a flag holding 95% of inventory's extra time outranks inventory's clean
  deploy, while a deploy that broke a healthy cohort keeps its whole share.

`explain_failed_rollouts` ranks the suspects of each
failed rollout, for `GET /api/v1/flags/changes/{id}`; `for_change_listed`
is what that endpoint lists: the suspects other than the change itself.
"""

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from scipy import stats

from deployments import suspects
from deployments.models import Verdict
from deployments.suspects import Onset, OtherRanking, Ranked, Regression
from deployments.topology import ERRORS, LATENCY
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
# Services below the regressed one whose flags are followed, the largest shares first.
MAX_BELOW = 5
# Sampled traces of the regressed route read to find the routes each service below serves.
ROUTE_TRACES = 300


@dataclass(frozen=True)
class Side:
    """Requests of a route or a cohort: errors, and the sum of ln(duration in ms)."""

    requests: int = 0
    errors: int = 0
    log_ms_sum: float = 0.0
    log_ms: tuple[float, ...] = ()  # a cohort's sampled ln(ms), for latency's test

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def amount(self, metric: str) -> float:
        """What the regression adds up: errors, or ln-milliseconds (a ×2 slowdown is one shift)."""
        return self.errors if metric == ERRORS else self.log_ms_sum

    def mean(self, metric: str) -> float:
        return self.amount(metric) / self.requests if self.requests else 0.0

    def __sub__(self, other: "Side") -> "Side":
        return Side(self.requests - other.requests, self.errors - other.errors,
                    self.log_ms_sum - other.log_ms_sum)  # fmt: skip


EXTRA = {ERRORS: "extra errors", LATENCY: "extra time"}


@dataclass(frozen=True)
class Window:
    """Where the flag ranker reads cohorts: service, routes, after the onset, metric.

    The regressed service's own, or one below it, over the same times and metric.
    """

    service: str
    routes: tuple[str, ...]
    start: datetime
    end: datetime
    metric: str
    route_after: Side
    route_extra: float
    # The share of the regression's extra errors (or time) in this service:
    # 1 for the regressed service, its downstream share (from the traces) below.
    through: float = 1.0


@dataclass(frozen=True)
class CohortShare:
    flag: str
    cohort: str
    share: float  # of its window's extra errors (or time), 0..1
    after: Side  # the cohort's requests after the onset
    window: Window  # where it was read

    @property
    def of_regression(self) -> float:
        """Its share of the regression itself: through the service below, if it is below."""
        return self.share * self.window.through


def rank(regression: Regression, onset: Onset) -> OtherRanking:
    """The flag changes that can explain the regression, and where it lives."""
    window = regression_window(regression, onset)
    seen = flag_store.flags_seen(window.start, window.end) if window.route_extra > 0 else []
    places = [window, *windows_below(regression, onset, window, seen)]
    best = best_cohorts(places, seen)
    entries, began = [], set()
    for change in candidate_changes(tuple(place.service for place in places), onset):
        entry, began_it = _score(change, best.get(change.flag), regression, onset, window)
        entries.append(entry)
        if began_it:
            began.add(change.flag)
    explains = max((best[flag].of_regression for flag in began), default=0.0)
    return OtherRanking(entries, lives_in=_lives_in(best, began, regression), explains=explains,
                        explains_below=explained_below(best, began, window),
                        metric=window.metric)  # fmt: skip


def explained_below(best: dict[str, CohortShare], began: set[str], window: Window):
    """For each service below: the largest share of its own extra errors or time that a
    cohort of a flag whose change began the regression holds (its deploy is not left it)."""
    explained: dict[str, float] = {}
    for flag in began:
        service = best[flag].window.service
        if service != window.service:
            explained[service] = max(explained.get(service, 0.0), best[flag].share)
    return explained


def regression_window(regression: Regression, onset: Onset) -> Window:
    """After the onset, as the deploys' evidence reads it (the window as given if none was
    found), in the metric that changed: the onset's, else errors if they rose, else time."""
    start = onset.at if onset.found else regression.start
    routes = (regression.route,) if regression.route else ()
    return service_window(regression.service, routes, baseline_start=regression.baseline_start,
                          start=start, end=regression.end, metric=onset.metric)  # fmt: skip


def service_window(service: str, routes: tuple[str, ...], *, baseline_start: datetime,
                   start: datetime, end: datetime, metric: str = "",
                   through: float = 1.0) -> Window:  # fmt: skip
    """The service's routes in [start, end), against [baseline_start, start)."""
    after = _route_side(service, start, end, routes)
    before = _route_side(service, baseline_start, start, routes)

    def excess(metric: str) -> float:
        return after.amount(metric) - after.requests * before.mean(metric)

    metric = metric or (ERRORS if excess(ERRORS) > 0 else LATENCY)
    return Window(service, routes, start, end, metric, after, excess(metric), through)


def windows_below(regression: Regression, onset: Onset, window: Window, seen) -> list[Window]:
    """The services below the regressed route that evaluate a flag, with their shares of it.

    Each is read on the routes it serves in the regressed route's traces, over
    the same times and in the same metric as the regressed service.
    """
    elsewhere = {service for flag in seen for service in flag.services} - {window.service}
    if window.route_extra <= 0 or not elsewhere:
        return []  # no flag below could be credited: spare reading the traces
    # In the window's metric: its share chains with the cohort's share of the same metric.
    shares = suspects.downstream_shares(regression, onset, metric=window.metric)
    below = sorted((service for service, share in shares.items()
                    if service in elsewhere and share >= suspects.EVIDENCE_MIN),
                   key=lambda service: -shares[service])[:MAX_BELOW]  # fmt: skip
    routes = routes_below(regression, window, set(below))
    return [service_window(service, tuple(sorted(routes[service])),
                           baseline_start=regression.baseline_start, start=window.start,
                           end=window.end, metric=window.metric, through=shares[service])
            for service in below if routes.get(service)]  # fmt: skip


def routes_below(regression: Regression, window: Window, services: set[str]) -> dict[str, set]:
    """The routes each of these services served in sampled traces of the regressed route.

    Only those: a flag's cohort is compared with the service's other requests
    of the same routes, not with faster or slower routes the route never calls.
    """
    if not services:
        return {}
    roots = spans.sample_requests(regression.service, window.start, window.end,
                                  route=regression.route, limit=ROUTE_TRACES)  # fmt: skip
    found: dict[str, set] = defaultdict(set)
    for span in spans.linked_spans([root.trace_id for root in roots], window.start, window.end):
        if span.is_request and span.service in services:
            found[span.service].add(span.route)
    return found


def _route_side(service: str, start: datetime, end: datetime, routes) -> Side:
    if end <= start:
        return Side()
    minutes = spans.minute_moments(spans.RequestFilter(service, start, end, routes=routes))
    return Side(sum(m[0] for m in minutes.values()), sum(m[1] for m in minutes.values()),
                sum(m[2] for m in minutes.values()))  # fmt: skip


def _flags_of(window: Window, seen) -> list[str]:
    evaluated = [flag for flag in seen if window.service in flag.services]
    evaluated.sort(key=lambda flag: -sum(flag.cohorts.values()))
    return [f.flag for f in evaluated[:MAX_FLAGS] if len(f.cohorts) <= MAX_COHORTS]


def best_cohorts(places: list[Window], seen) -> dict[str, CohortShare]:
    """Each flag's cohort holding the largest share of the regression, wherever it is read."""
    best: dict[str, CohortShare] = {}
    for window in places:
        if window.route_extra <= 0:
            continue
        for flag in _flags_of(window, seen):
            found = best_cohort(flag, window)
            if found is not None and (flag not in best or
                                      found.of_regression > best[flag].of_regression):
                best[flag] = found
    return best


def cohort_side(flag: str, cohort: str, window: Window, start: datetime, end: datetime) -> Side:
    """The cohort's requests of the window's service and routes in [start, end)."""
    which = CohortFilter(flag=flag, service=window.service, start=start, end=end, cohort=cohort,
                         routes=window.routes)  # fmt: skip
    counts = flag_store.cohort_route_counts(which)
    requests, errors = sum(n for n, _ in counts.values()), sum(e for _, e in counts.values())
    if window.metric == ERRORS or not requests:
        return Side(requests, errors)
    samples = flag_store.cohort_latency_samples_ms(
        which, max_samples=settings.MONOENV_DEPLOY_MAX_SAMPLES
    )
    log_ms = tuple(math.log(max(ms, 0.001)) for values in samples.values() for ms in values)
    mean = sum(log_ms) / len(log_ms) if log_ms else 0.0
    # A sample stands for all the cohort's requests.
    return Side(requests, errors, mean * requests, log_ms)


def best_cohort(flag: str, window: Window) -> CohortShare | None:
    """The cohort of the flag holding the largest share of the route's extra errors or time."""
    found = None
    for cohort in flag_store.cohort_counts(flag, window.start, window.end,
                                           services=(window.service,)):  # fmt: skip
        side = cohort_side(flag, cohort, window, window.start, window.end)
        share = extra_share(side, window.route_after, window.route_extra, metric=window.metric)
        if side.requests and (found is None or share > found.share):
            found = CohortShare(flag, cohort, share, side, window)
    return found


def extra_share(cohort: Side, route: Side, route_extra: float, *, metric: str = ERRORS) -> float:
    """The cohort's errors (or time) beyond the mean of every other request, over the route's."""
    others = route - cohort
    if others.requests <= 0 or route_extra <= 0:
        # Every request is in this cohort: the comparison is with the route before.
        return 1.0 if others.requests <= 0 and route_extra > 0 else 0.0
    extra = cohort.amount(metric) - cohort.requests * others.mean(metric)
    return min(1.0, max(0.0, extra / route_extra))


def candidate_changes(services: tuple[str, ...], onset: Onset) -> list[FlagChange]:
    """The latest change of each flag of these services made in the window that can explain it."""
    earliest, cutoff = suspects.cause_window(onset)
    # services is a JSON list: one containment test per service.
    naming = Q(services=[])
    for service in services:
        naming |= Q(services__contains=[service])
    rows = FlagChange.objects.filter(at__gte=earliest, at__lt=cutoff).filter(naming).order_by(
        "flag", "-at", "-id"
    )
    latest: dict[str, FlagChange] = {}
    for change in rows:
        latest.setdefault(change.flag, change)
    return list(latest.values())


def healthy_before(cohort: CohortShare, before: Side, *, metric: str = ERRORS) -> bool:
    """Whether the cohort was clearly better before the onset than after it.

    Errors: too few for its rate after (one-sided binomial). Latency: its
    ln(ms) clearly lower (one-sided Welch t-test).
    """
    if metric == ERRORS:
        if not before.requests or cohort.after.rate <= 0:
            return False
        return bool(stats.binom.cdf(before.errors, before.requests, cohort.after.rate) < HEALTHY_P)
    if len(before.log_ms) < 2 or len(cohort.after.log_ms) < 2:
        return False
    test = stats.ttest_ind(before.log_ms, cohort.after.log_ms, equal_var=False, alternative="less")
    return bool(test.pvalue < HEALTHY_P)


def _score(change: FlagChange, cohort: CohortShare | None, regression: Regression,
           onset: Onset, window: Window) -> tuple[Ranked, bool]:  # fmt: skip
    """The change's entry, and whether it began the regression."""
    tie_break = suspects.tie_break(onset, change.at)
    ago = suspects.ago_text(onset, change.at)
    where, extra = regression.route or regression.service, EXTRA[window.metric]

    def entry(score: float, evidence: str) -> Ranked:
        return Ranked(None, score, evidence, onset_at=onset.at if onset.found else None,
                      kind=KIND, change_id=change.pk, label=f"flag {change.flag}",
                      link=change.link(), at=change.at)  # fmt: skip

    if cohort is None:
        evidence = (f"{change.flag} changed {ago}; no request of {where} or of a service below "
                    f"it evaluated it after the regression began, or the route had no {extra}.")
        return entry(tie_break, evidence), False
    held, share = _held(cohort, regression), cohort.of_regression
    # Its share where it was read: a cohort holding most of a small service's extra
    # time may have begun it, and then that service's deploy is not left it.
    if cohort.share < CONCENTRATED / 2:
        return entry(share + tie_break, f"{change.flag} changed {ago}; at most {held}."), False
    since = max(change.at, regression.baseline_start)
    before = cohort_side(change.flag, cohort.cohort, cohort.window, since, cohort.window.start)
    if healthy_before(cohort, before, metric=window.metric):
        served = (f"{before.requests} requests with {before.errors} errors"
                  if window.metric == ERRORS else f"{before.requests} faster requests")
        evidence = (f"{held}, but that cohort served {served} from the change until the "
                    f"regression began: {change.flag} changed {ago} and did not begin it.")
        return entry(tie_break, evidence), False
    return entry(share + tie_break, f"{held}; {change.flag} changed {ago}."), True


def _held(cohort: CohortShare, regression: Regression) -> str:
    """Where the cohort holds the regression, in words: in the service, or through one below."""
    window = cohort.window
    extra, verb = EXTRA[window.metric], ("are" if window.metric == ERRORS else "is")
    requests = f"requests with {cohort.flag}={cohort.cohort}"
    if window.service == regression.service:
        where = regression.route or regression.service
        return f"{cohort.share:.0%} of the {extra} on {where} {verb} in {requests}"
    where = f"{regression.service} {regression.route}".strip()
    return (f"{window.through:.0%} of the {extra} on {where} {verb} in {window.service}, "
            f"and {cohort.share:.0%} of that in {requests}")


def _lives_in(best: dict[str, CohortShare], began: set[str], regression: Regression) -> str:
    hosts = [c for flag, c in best.items() if flag not in began and c.of_regression >= CONCENTRATED]
    if not hosts:
        return ""
    top = max(hosts, key=lambda c: c.of_regression)
    return f"{suspects.LIVES_IN} {_held(top, regression)}."


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
