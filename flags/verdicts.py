"""Per-variant verdicts: each cohort of a flag against its control, judged as a deploy is.

At each look after a change, for every service that evaluates the flag, each
cohort seen since the change is compared with the control cohort over the
same range [change, look), on the same routes, by the verdict engine
(deployments/judge.py). Requests are read from telemetry through the flag
cohort interface (telemetry/flag_store.py), each request once.

Looks (flag_looks): the deploy looks first (every minute of the first
MONOENV_DEPLOY_WATCH_MINUTES, and each checkpoint), then, for as long as the
flag is in a partial rollout, one every MONOENV_FLAG_CONTINUE_EVERY_MINUTES up
to MONOENV_FLAG_WATCH_HOURS after the change. A partial rollout: the last
MONOENV_FLAG_DETECT_MINUTES show the control and at least one other cohort
serving, and no later change of the flag has taken over. Once a variant
serves everyone (or no one), or the horizon is reached, looking stops.

Alpha. The first hour's looks spend (1 − MONOENV_FLAG_CONTINUED_ALPHA_SHARE)
of what a deploy's would (deployments/analysis.rules_at); the continued looks
share the rest equally. By the union bound the chance of a false fail over
every look stays within 1 − confidence. Continued looks cannot pass: a pass
is said at the first hour's checkpoints, and only a fail can change it later.

The change's verdict: fail as soon as any cohort of any service fails, and a
fail holds (it is queued in the outbox once, flags/notify.py); at a
checkpoint, pass when every judged cohort passes, else inconclusive;
pending until then.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments import analysis, judge, reasons
from deployments.models import Verdict, looks
from flags import notify
from flags.models import FlagChange, FlagFinding, FlagVerdictRecord
from notifications import outbox
from telemetry import flag_store
from telemetry.flag_store import CohortFilter


def read_cohort(cohort: CohortFilter) -> judge.Side:
    """One side of a comparison: a cohort's requests, as deployments/sides.py reads a version's."""
    counts = flag_store.cohort_route_counts(cohort)
    latencies = flag_store.cohort_latency_samples_ms(
        cohort, max_samples=settings.MONOENV_DEPLOY_MAX_SAMPLES
    )
    return judge.Side(
        requests={route: n for route, (n, _) in counts.items()},
        errors={route: e for route, (_, e) in counts.items()},
        error_types=flag_store.cohort_error_type_counts(cohort),
        latencies_ms={route: np.asarray(values) for route, values in latencies.items()},
    )


@dataclass
class CohortJudgement:
    service: str
    variant: str
    judgement: judge.Judgement
    reason: str


@dataclass
class Look:
    minute: int
    verdict: str
    reason: str
    start: datetime
    end: datetime
    cohorts: list[CohortJudgement]
    checkpoint: bool


def look(change: FlagChange, minute: int) -> Look:
    """Judge every cohort of every service against the control, from the change to `minute`.

    The window ends at the flag's next change, if one came first: its shares
    are that change's to judge. The rules then spend alpha for the minutes
    judged, so looking again at the same minutes decides the same way.
    """
    start, end = change.at, change.at + timedelta(minutes=minute)
    next_change_at = _next_change_at(change)
    if next_change_at is not None:
        end = min(end, next_change_at)
    judged_minutes = max(1, min(minute, int((end - start).total_seconds() // 60)))
    rules = rules_at(judged_minutes)
    judged = []
    for service in change.services:
        judged += _judge_service(change, service, start, end, judged_minutes, rules)
    verdict, reason = _overall(change, judged, checkpoint=minute in _checkpoints())
    return Look(minute, verdict, reason, start, end, judged, minute in _checkpoints())


def _next_change_at(change: FlagChange) -> datetime | None:
    later = FlagChange.objects.filter(flag=change.flag, at__gt=change.at).order_by("at")
    return later.values_list("at", flat=True).first()


def _judge_service(change, service, start, end, minute, rules) -> list[CohortJudgement]:
    def cohort_filter(**which) -> CohortFilter:
        return CohortFilter(flag=change.flag, service=service, start=start, end=end,
                            environment=change.environment or None, **which)  # fmt: skip

    control = read_cohort(cohort_filter(cohort=change.control))
    cohorts = flag_store.cohort_counts(change.flag, start, end, services=(service,))
    judged = []
    for variant in sorted(set(cohorts) - {change.control}):
        candidate = read_cohort(cohort_filter(cohort=variant))
        if not candidate.routes():
            continue
        judgement = judge.judge(control, candidate, rules)
        context = reasons.Context(
            service=service,
            candidate=f"{change.flag}={variant}",
            against=f"{change.flag}={change.control} over the same minutes",
            minutes=minute,
            baseline_minutes=minute,
            confidence=settings.MONOENV_DEPLOY_CONFIDENCE,
        )
        judged.append(CohortJudgement(service, variant, judgement,
                                      reasons.reason(judgement, context)))  # fmt: skip
    return judged


def _overall(change: FlagChange, judged: list[CohortJudgement], *, checkpoint: bool):
    failed = [c for c in judged if c.judgement.verdict == judge.FAIL]
    if failed:
        return Verdict.FAIL, " ".join(
            f"{c.service}, {change.flag}={c.variant}: {c.reason}" for c in failed
        )
    if not judged:
        return Verdict.PENDING, (
            f"No cohort of {change.flag} to compare with the control "
            f"({change.control or 'none chosen'}) yet."
        )
    if not checkpoint:
        return Verdict.PENDING, "No regression so far; the next checkpoint decides."
    if all(c.judgement.verdict == judge.PASS for c in judged):
        return Verdict.PASS, " ".join(f"{change.flag}={c.variant}: {c.reason}" for c in judged)
    return Verdict.INCONCLUSIVE, " ".join(
        f"{change.flag}={c.variant}: {c.reason}" for c in judged if c.judgement.verdict != "pass"
    )


def _checkpoints() -> list[int]:
    return sorted(settings.MONOENV_DEPLOY_CHECKPOINTS)


def first_hour_looks() -> list[int]:
    return looks()


def continued_looks() -> list[int]:
    """The looks after the first hour's, while a rollout stays partial."""
    every = settings.MONOENV_FLAG_CONTINUE_EVERY_MINUTES
    horizon = settings.MONOENV_FLAG_WATCH_HOURS * 60
    last = max(first_hour_looks())
    return list(range(last + every, horizon + 1, every))


def flag_looks() -> list[int]:
    return first_hour_looks() + continued_looks()


def rules_at(minute: int):
    """The rules of a flag's look at `minute`, with the alpha it may spend (see the docstring)."""
    share = settings.MONOENV_FLAG_CONTINUED_ALPHA_SHARE
    if minute <= max(first_hour_looks()):
        rules = analysis.rules_at(minute)
        return replace(rules, fail_alpha=rules.fail_alpha * (1 - share))
    alpha = 1 - settings.MONOENV_DEPLOY_CONFIDENCE
    rules = analysis.rules_at(max(first_hour_looks()))
    return replace(rules, fail_alpha=alpha * share / len(continued_looks()), pass_alpha=0.0)


def next_look_after(minute: int | None, change: FlagChange | None = None, *, now=None):
    """The next look; past the first hour only while `change` is in a partial rollout."""
    later = [m for m in flag_looks() if minute is None or m > minute]
    if not later:
        return None
    if later[0] > max(first_hour_looks()) and not (change and still_partial(change, now=now)):
        return None
    return later[0]


def still_partial(change: FlagChange, *, now: datetime | None = None) -> bool:
    """Whether the flag still serves the control and another cohort, and nothing took over."""
    now = now or timezone.now()
    if FlagChange.objects.filter(flag=change.flag, at__gt=change.at).exists():
        return False  # a later change has its own verdict, and the gate reads that one
    recent = now - timedelta(minutes=settings.MONOENV_FLAG_DETECT_MINUTES)
    counts = flag_store.cohort_counts(change.flag, recent, now, services=tuple(change.services))
    serving = {cohort for cohort, count in counts.items() if count > 0}
    return change.control in serving and len(serving) >= 2


def run_look(change_id: int, minute: int, *, now: datetime | None = None) -> Look:
    """Take one look at a change and keep it. Running it twice changes nothing."""
    now = now or timezone.now()
    change = FlagChange.objects.get(pk=change_id)
    result = look(change, minute)
    with transaction.atomic():
        change = FlagChange.objects.select_for_update().get(pk=change_id)
        if change.verdict_records.filter(minute__gte=minute).exists():
            return result  # this look, or a later one, was taken already
        _save(change, result, now=now)
        was_failing = change.verdict == Verdict.FAIL
        if change.verdict != Verdict.FAIL and (
            result.verdict == Verdict.FAIL or result.checkpoint
        ):
            change.verdict, change.verdict_reason = result.verdict, result.reason
        elif change.verdict == Verdict.PENDING:
            change.verdict_reason = result.reason
        change.evaluated_at = now
        change.schedule_look(next_look_after(minute, change, now=now))
        change.save()
        if change.verdict == Verdict.FAIL and not was_failing:
            # Queued in the look's transaction: a new fail is notified once.
            outbox.queue(notify.fail_message(change, _failing(result)), now=now)
    return result


def _failing(result: Look) -> list[notify.FailingCohort]:
    return [
        notify.FailingCohort(c.service, c.variant, c.reason)
        for c in result.cohorts
        if c.judgement.verdict == judge.FAIL
    ]


def _save(change: FlagChange, result: Look, *, now: datetime) -> None:
    """Keep a checkpoint's look, and a new fail between them; others leave no record.

    Between checkpoints a look has no pass alpha: its pending is no news.
    """
    last = change.verdict_records.last()
    if not result.checkpoint:
        if result.verdict != Verdict.FAIL or (last is not None and last.verdict == Verdict.FAIL):
            return
    record = FlagVerdictRecord.objects.create(
        change=change, minute=result.minute, verdict=result.verdict, reason=result.reason,
        control=change.control, window_start=result.start, window_end=result.end,
        created_at=now,
    )  # fmt: skip
    FlagFinding.objects.bulk_create(
        FlagFinding(change=change, record=record, service=c.service, variant=c.variant,
                    **vars(finding))  # fmt: skip
        for c in result.cohorts
        for finding in c.judgement.findings
    )


def evaluate_due(*, now: datetime | None = None) -> int:
    """Take every look that came due; claims each with a conditional update."""
    now = now or timezone.now()
    taken = 0
    for change in FlagChange.objects.due(now)[:200]:
        minute = change.next_look
        if minute is None:
            continue
        # Catch up: the latest look whose time has come (as deploys do).
        due = [m for m in flag_looks() if m >= minute and change.at + timedelta(minutes=m) <= now]
        minute = max(due) if due else minute
        claimed = FlagChange.objects.filter(pk=change.pk, next_look=change.next_look).update(
            next_look=next_look_after(minute, change, now=now)
        )
        if claimed:
            run_look(change.pk, minute, now=now)
            taken += 1
    return taken
