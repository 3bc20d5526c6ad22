"""Which change explains a regression: deploys of any service, ranked by evidence.

A route regressed: a deploy failed its analysis, an SLO paged, or the route
watch saw a shift between deploys. Three steps, each keeping an invariant:

1. **Onset.** The minute the regression began comes from the route's own
   per-minute errors and latency (deployments/changepoint.py), not from any
   deploy's time, sought from ONSET_MARGIN before the window on (the minutes
   before still count as the baseline). The caller's `began` (or the window's
   end) stands in only when the data shows no clear change.
2. **Who can explain it.** Only deploys made before the onset (up to the end
   of the onset's minute, the data's resolution) and within the lookback, and
   only those still serving at the onset or the latest change of their
   service: a deploy superseded before the regression began explains nothing.
3. **Evidence.** Sampled requests of the route, before and after the onset,
   are followed down their traces (deployments/topology.py). A downstream
   service's score is its share of the extra errors or time (the larger);
   the regressed service's own latest deploy gets the part nothing below
   explains; a service not below the route gets nothing. Closeness to the
   onset only breaks ties.

Other kinds of change (flag changes) are ranked next to deploys by the apps
that own them, which sit above deployments and so register a ranker from
their AppConfig.ready() (`register_change_kind`, as the gate's flag branch
does). A ranker is given the same regression and the same onset, and returns
its changes scored on the same 0..1 scale, plus, when the regression lives in
one of its cohorts but none of its changes began it, a sentence the
regressed service's own deploy carries in its evidence. What its changes
that began the regression explain is not left to a deploy: the regressed
service's deploy is left 1 − the larger of the share below and `explains`;
a deploy of a service below keeps, in each metric, its share × (1 − the
part of that service's own extra that they explain, `explains_below`), the
larger of the two metrics. A change that did not begin it (its cohort was
healthy until that deploy) takes nothing from the deploy. Every suspect, of
any kind, is one Suspect row, ranked in one order.

`shown()` keeps what a page lists by default: the suspects with evidence, at
most SHOWN_SUSPECTS. `for_deploy`, `for_alert`, `for_shift` and `for_change`
are the read interface for other apps, and `named_cause` is the sentence a
failing deploy's reason ends with: the other change that explains it
(`blamed_elsewhere`), or the flag cohort it lives in. Spans are read only
through telemetry/spans.py.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from deployments import changepoint, topology
from deployments.models import Deployment, RouteShift, Suspect
from telemetry import spans

SAMPLED_REQUESTS = 3000
# The onset is sought from this long before the regression's window: what
# went wrong may have begun a little before the deploy that noticed it, while
# an old burst in the baseline is not what is wrong now.
ONSET_MARGIN = timedelta(minutes=15)
# The onset is a minute; a deploy within it, or a little after for clock skew, may be the cause.
ONSET_RESOLUTION = timedelta(minutes=1)
LATE_SLACK = timedelta(seconds=30)
# A version with a request this close after the onset was still serving.
SERVING_WINDOW = timedelta(minutes=2)
TIE_BREAK_WEIGHT = 0.01
# Below this score a suspect has no evidence worth listing by default.
EVIDENCE_MIN = 0.05
SHOWN_SUSPECTS = 5
# A failing deploy's own reason names a downstream suspect at least this strong.
BLAME_MIN = 0.5


@dataclass(frozen=True)
class Regression:
    service: str
    route: str  # '' for the whole service
    start: datetime
    end: datetime
    baseline_start: datetime
    # When the caller believes it began (a deploy's time); used only when the
    # per-minute data shows no clear onset. An alert knows only its window.
    began: datetime | None = None


@dataclass(frozen=True)
class Onset:
    at: datetime  # the split between before and after: the regression's first minute
    latest_cause: datetime  # a change after this (and LATE_SLACK) cannot have begun it
    metric: str = ""  # 'errors' or 'latency' when found in the data; '' when assumed

    @property
    def found(self) -> bool:
        return bool(self.metric)


@dataclass(frozen=True)
class Ranked:
    deployment: Deployment | None  # None for another kind of change
    score: float
    evidence: str
    onset_at: datetime | None = None
    kind: str = "deploy"
    change_id: int | None = None  # the other kind's row
    label: str = ""  # how pages name the other kind's change
    link: str = ""
    at: datetime | None = None  # when the other kind's change was made

    @property
    def changed_at(self) -> datetime:
        return self.deployment.deployed_at if self.deployment is not None else self.at


@dataclass(frozen=True)
class OtherRanking:
    """What a registered kind of change found: its suspects, and where the regression lives."""

    ranked: list[Ranked] = field(default_factory=list)
    # Set when the regression lives in one of its cohorts though none of its
    # changes began it ("97% of the extra errors … are in requests with
    # new-checkout=on"): the regressed service's own deploy says so.
    lives_in: str = ""
    # The share of the regression its changes explain (0..1): not left to the own deploy.
    explains: float = 0.0
    # For a service below the regressed one: the share (0..1) of that
    # service's own extra errors or time (in `metric`) that changes which began
    # it explain. Not left to that service's deploy, in that metric.
    explains_below: dict[str, float] = field(default_factory=dict)
    metric: str = ""  # topology.ERRORS or topology.LATENCY: what explains_below measured


# How a lives_in sentence begins, so a message can quote it from the evidence.
LIVES_IN = "It lives in one cohort:"

# Apps above deployments rank their own kinds of change; they register from ready().
_other_kinds: dict[str, Callable[["Regression", "Onset"], OtherRanking]] = {}


def register_change_kind(kind: str, ranker: Callable[["Regression", "Onset"], OtherRanking]):
    _other_kinds[kind] = ranker


def find_onset(regression: Regression) -> Onset:
    """The change-point of the route's minutes, from the baseline's start to the end."""
    routes = (regression.route,) if regression.route else ()
    moments = spans.minute_moments(
        spans.RequestFilter(regression.service, regression.baseline_start, regression.end,
                            routes=routes)
    )  # fmt: skip
    minutes = _minutes(regression.baseline_start, regression.end)
    series = [changepoint.Minute(*moments.get(minute, (0, 0, 0.0, 0.0))) for minute in minutes]
    earliest = regression.start - ONSET_MARGIN
    first_index = next((i for i, minute in enumerate(minutes) if minute >= earliest), 1)
    found = changepoint.onset(series, first_index=first_index)
    if found is None:
        # No clear change: the window as given, and any change up to its believed start.
        return Onset(regression.start, regression.began or regression.end)
    at = minutes[found.index]
    return Onset(at, at + ONSET_RESOLUTION, found.metric)


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    minute, minutes = spans.minute_floor(start), []
    while minute < end:
        minutes.append(minute)
        minute += timedelta(minutes=1)
    return minutes


def rank(regression: Regression) -> list[Ranked]:
    """The changes of every kind that can explain the regression, best evidence first."""
    onset = find_onset(regression)
    others = [ranker(regression, onset) for ranker in _other_kinds.values()]
    lives_in = " ".join(other.lives_in for other in others if other.lives_in)
    explained = max((other.explains for other in others), default=0.0)
    ranked = rank_deploys(regression, onset, lives_in=lives_in, explained=explained,
                          explained_below=_explained_below(others))  # fmt: skip
    ranked += [entry for other in others for entry in other.ranked]
    ranked.sort(key=lambda r: (-r.score, -r.changed_at.timestamp()))
    return ranked


# (metric, service below) -> the share of that service's extra errors or time
# that other kinds of change explain.
ExplainedBelow = dict[tuple[str, str], float]


def _explained_below(others: list[OtherRanking]) -> ExplainedBelow:
    """The most any kind of change explains of each service below, in each metric."""
    explained: ExplainedBelow = {}
    for other in others:
        if other.metric not in (topology.ERRORS, topology.LATENCY):
            continue  # a share in no named metric cannot be taken from either
        for service, share in other.explains_below.items():
            key = (other.metric, service)
            explained[key] = max(explained.get(key, 0.0), share)
    return explained


def rank_deploys(
    regression: Regression, onset: Onset, *, lives_in: str = "", explained: float = 0.0,
    explained_below: ExplainedBelow | None = None,
) -> list[Ranked]:  # fmt: skip
    """The deploys that can explain the regression.

    `explained`: the share other kinds of change explain, taken from what
    the own deploy is left; `lives_in` joins the own deploy's evidence.
    `explained_below`: what they explain of each service below, taken from
    what that service's deploy is left.
    """
    candidates = _can_explain(regression, onset)
    if not candidates:
        return []
    below = Below.of(*_breakdowns(regression, onset), explained_below or {})
    own = _latest_own(candidates, regression.service)
    ranked = []
    for deploy in candidates:
        entry = _score(deploy, regression, onset, below, own, explained=explained)
        if deploy == own and lives_in:
            entry = replace(entry, evidence=f"{entry.evidence} {lives_in}")
        ranked.append(replace(entry, onset_at=onset.at if onset.found else None))
    return ranked


def _can_explain(regression: Regression, onset: Onset) -> list[Deployment]:
    earliest, cutoff = cause_window(onset)
    # started_at bounds the query; deployed_at (the first span) decides.
    upsert = timedelta(minutes=settings.MONOENV_DEPLOY_UPSERT_MINUTES)
    before = [
        deploy
        for deploy in Deployment.objects.filter(
            started_at__gte=earliest - upsert, started_at__lte=cutoff + upsert
        )
        if earliest <= deploy.deployed_at < cutoff
    ]
    latest: dict[tuple[str, str], Deployment] = {}
    for deploy in sorted(before, key=lambda d: (d.deployed_at, d.pk)):
        latest[(deploy.service, deploy.environment)] = deploy
    changed_serving = {deploy.pk for deploy in latest.values()}
    return [
        deploy
        for deploy in before
        if deploy.pk in changed_serving or _still_serving(deploy, onset.at)
    ]


def _still_serving(deploy: Deployment, at: datetime) -> bool:
    count, _ = spans.presence(
        spans.RequestFilter(deploy.service, at, at + SERVING_WINDOW, version=deploy.version)
    )
    return count > 0


def _latest_own(candidates: list[Deployment], service: str) -> Deployment | None:
    own = [deploy for deploy in candidates if deploy.service == service]
    return max(own, key=lambda d: (d.deployed_at, d.pk)) if own else None


def downstream_shares(
    regression: Regression, onset: Onset, *, metric: str = ""
) -> dict[str, float]:
    """Each service below the route: its share of the extra errors or time after the onset.

    In `metric` (topology.ERRORS or topology.LATENCY), else the larger of the
    two, as a deploy of that service scores it.
    """
    return topology.downstream_shares(*_breakdowns(regression, onset), metric=metric)


def _breakdowns(regression: Regression, onset: Onset) -> tuple[topology.Breakdown, ...]:
    """The route's sampled requests after the onset, and before it."""
    return (_breakdown(regression, onset.at, regression.end),
            _breakdown(regression, regression.baseline_start, onset.at))  # fmt: skip


@dataclass(frozen=True)
class Below:
    """The services below the route: their shares of the regression, and what is left to
    their deploys once other kinds of change took what they explain."""

    by_metric: dict[str, dict[str, float]]  # metric -> service -> share
    explained: ExplainedBelow

    @classmethod
    def of(cls, regressed, baseline, explained: ExplainedBelow) -> "Below":
        return cls({metric: topology.downstream_shares(regressed, baseline, metric=metric)
                    for metric in (topology.ERRORS, topology.LATENCY)}, explained)  # fmt: skip

    def share(self, service: str) -> float | None:
        """The larger of its error and time shares; None when it is not below."""
        found = [shares[service] for shares in self.by_metric.values() if service in shares]
        return max(found) if found else None

    def largest(self) -> float:
        return max((share for shares in self.by_metric.values() for share in shares.values()),
                   default=0.0)  # fmt: skip

    def left(self, service: str) -> float:
        """In each metric, its share less the part explained elsewhere; the larger."""
        return max(shares.get(service, 0.0) * (1 - self.explained.get((metric, service), 0.0))
                   for metric, shares in self.by_metric.items())  # fmt: skip

    def explained_of(self, service: str) -> tuple[str, float]:
        """The metric in which the most of its own extra is explained elsewhere, and how much."""
        return max(((metric, share) for (metric, name), share in self.explained.items()
                    if name == service), key=lambda found: found[1], default=("", 0.0))  # fmt: skip


def lookback() -> timedelta:
    return timedelta(minutes=settings.MONOENV_DEPLOY_SUSPECT_LOOKBACK_MINUTES)


def cause_window(onset: Onset) -> tuple[datetime, datetime]:
    """[earliest, latest) times of a change that can have begun the regression."""
    return onset.at - lookback(), onset.latest_cause + LATE_SLACK


def tie_break(onset: Onset, changed_at: datetime) -> float:
    """At most TIE_BREAK_WEIGHT: closer to the onset ranks first among equal shares."""
    reference = onset.at if onset.found else onset.latest_cause
    return max(0.0, 1 - abs(reference - changed_at) / lookback()) * TIE_BREAK_WEIGHT


def began_text(onset: Onset) -> str:
    if onset.found:
        return f"began at {onset.at:%H:%M} UTC (a change-point in its {onset.metric})"
    return "is under way"


def _score(deploy, regression: Regression, onset: Onset, below: Below, own, *,
           explained=0.0) -> Ranked:  # fmt: skip
    tie_break_ = tie_break(onset, deploy.deployed_at)
    ago = ago_text(onset, deploy.deployed_at)
    where = f"{regression.service} {regression.route}".strip()
    began = began_text(onset)
    if deploy.service == regression.service:
        if deploy != own:
            evidence = (f"{deploy.service} {deploy.version} deployed {ago} is still serving, "
                        f"but {own.version} came after it.")  # fmt: skip
            return Ranked(deploy, tie_break_, evidence)
        # Flag cohorts and services below may hold the same extra errors: the larger counts.
        share = 1 - max(below.largest(), explained)
        below = "services below it or flag cohorts" if explained else "services below it"
        evidence = (
            f"{deploy.service} itself deployed {deploy.version} {ago}; the regression on "
            f"{where} {began}, and {share:.0%} of it is not explained by {below}."
        )
        return Ranked(deploy, share + tie_break_, evidence)
    share = below.share(deploy.service)
    if share is None:
        evidence = f"{deploy.service} deployed {deploy.version} {ago}; it is not below {where}."
        return Ranked(deploy, tie_break_, evidence)
    evidence = (
        f"The regression on {where} {began}; {share:.0%} of its extra errors or time is in "
        f"child spans served by {deploy.service}, which deployed {deploy.version} {ago}."
    )
    metric, explained_there = below.explained_of(deploy.service)
    left = below.left(deploy.service)
    if explained_there > 0:
        extra = "extra errors" if metric == topology.ERRORS else "extra time"
        evidence = (f"{evidence[:-1]}; {explained_there:.0%} of {deploy.service}'s {extra} is "
                    f"in a flag cohort whose change began it, which leaves this deploy "
                    f"{left:.0%}.")  # fmt: skip
    return Ranked(deploy, left + tie_break_, evidence)


def ago_text(onset: Onset, deployed_at: datetime) -> str:
    if not onset.found:
        minutes = round((onset.latest_cause - deployed_at).total_seconds() / 60)
        return f"{max(minutes, 0)} min before the regression"
    minutes = round((onset.at - deployed_at).total_seconds() / 60)
    if minutes <= 0:
        return "as the regression began"
    return f"{minutes} min before the regression began"


def _breakdown(regression: Regression, start: datetime, end: datetime) -> topology.Breakdown:
    roots = spans.sample_requests(
        regression.service, start, end, route=regression.route, limit=SAMPLED_REQUESTS
    )
    if not roots:
        return topology.Breakdown()
    trace_spans = spans.trace_spans([root.trace_id for root in roots], start, end)
    return topology.breakdown(trace_spans, roots)


def record_for_deploy(deploy: Deployment, regression: Regression) -> list[Suspect]:
    return _record(rank(regression), Subject(deployment=deploy))


def record_for_alert(alert_id: int, regression: Regression) -> list[Suspect]:
    return _record(rank(regression), Subject(alert_id=alert_id))


def record_for_shift(shift: RouteShift, regression: Regression) -> list[Suspect]:
    return _record(rank(regression), Subject(route_shift=shift))


def record_for_change(kind: str, change_id: int, regression: Regression) -> list[Suspect]:
    """Suspects of another kind of change's regression (a flag rollout's failing cohort)."""
    return _record(rank(regression), Subject(change_kind=kind, change_id=change_id))


@dataclass(frozen=True)
class Subject:
    """The regression's owner: exactly one of these is set."""

    deployment: Deployment | None = None
    alert_id: int | None = None
    route_shift: RouteShift | None = None
    change_kind: str = ""
    change_id: int | None = None

    def fields(self) -> dict:
        return {"deployment": self.deployment, "alert_id": self.alert_id,
                "route_shift": self.route_shift, "change_kind": self.change_kind,
                "change_id": self.change_id}  # fmt: skip


def _record(ranked: list[Ranked], subject: Subject) -> list[Suspect]:
    with transaction.atomic():
        Suspect.objects.filter(**subject.fields()).delete()
        return Suspect.objects.bulk_create(
            Suspect(
                **subject.fields(),
                suspect=entry.deployment,
                suspect_kind=entry.kind,
                suspect_change_id=entry.change_id,
                suspect_label=entry.label,
                suspect_link=entry.link,
                suspect_at=entry.at,
                rank=position,
                score=round(entry.score, 4),
                evidence=entry.evidence,
                onset_at=entry.onset_at,
            )
            for position, entry in enumerate(ranked, start=1)
        )


# The read interface: what pages and the API list.


@dataclass(frozen=True)
class SuspectList:
    shown: list[Suspect]  # best first
    total: int  # every suspect recorded, shown or not

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)


def shown(suspects: Iterable[Suspect], *, show_all: bool = False) -> list[Suspect]:
    """By rank; unless show_all, only those with evidence, at most SHOWN_SUSPECTS."""
    ordered = sorted(suspects, key=lambda suspect: suspect.rank)
    if show_all:
        return ordered
    return [suspect for suspect in ordered if suspect.score >= EVIDENCE_MIN][:SHOWN_SUSPECTS]


def _listed(rows, show_all: bool) -> SuspectList:
    everything = list(rows.select_related("suspect"))
    return SuspectList(shown(everything, show_all=show_all), len(everything))


def for_deploy(deploy: Deployment, *, show_all: bool = False) -> SuspectList:
    return _listed(Suspect.objects.filter(deployment=deploy), show_all)


def for_alert(alert_id: int, *, show_all: bool = False) -> SuspectList:
    return _listed(Suspect.objects.filter(alert_id=alert_id), show_all)


def for_shift(shift: RouteShift, *, show_all: bool = False) -> SuspectList:
    return _listed(Suspect.objects.filter(route_shift=shift), show_all)


def for_change(kind: str, change_id: int, *, show_all: bool = False) -> SuspectList:
    return _listed(Suspect.objects.filter(change_kind=kind, change_id=change_id), show_all)


def _top(deploy: Deployment) -> Suspect | None:
    return Suspect.objects.filter(deployment=deploy).select_related("suspect").first()


def lives_in(deploy: Deployment) -> str:
    """The sentence naming the flag cohort a deploy's own regression lives in, or ''."""
    return _lives_in_sentence(_top(deploy), deploy)


def _lives_in_sentence(top: Suspect | None, deploy: Deployment) -> str:
    if top is None or top.suspect_id != deploy.pk or LIVES_IN not in top.evidence:
        return ""
    return top.evidence[top.evidence.index(LIVES_IN) :]


def named_cause(deploy: Deployment) -> str:
    """The sentence a failing deploy's reason ends with: what its regression comes from.

    Another change that explains at least half of it (a deploy below, a flag
    rollout), or else the flag cohort its own regression lives in; '' when the
    deploy itself is the likely cause.
    """
    top = _top(deploy)
    other = _elsewhere(top, deploy)
    if other is None:
        return _lives_in_sentence(top, deploy)
    # The score is the share plus a tie-break under 0.01: rounded down, it reads as the share.
    share = math.floor(min(other.score, 1.0) * 100)
    return f"Likely cause: {other.label()}, not this deploy ({share}% of the regression)."


def blamed_elsewhere(deploy: Deployment) -> Suspect | None:
    """The top suspect of a deploy's regression when it is another change, with evidence.

    Another deploy ("… payments deployed v5 as the regression began") or a
    change of another kind ("91% of the extra errors … new-checkout=on").
    None when the deploy itself ranks first, or nothing else explains half of it.
    """
    return _elsewhere(_top(deploy), deploy)


def _elsewhere(top: Suspect | None, deploy: Deployment) -> Suspect | None:
    if top is None or top.suspect_id == deploy.pk or top.score < BLAME_MIN:
        return None
    return top
