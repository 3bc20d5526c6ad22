"""Flag changes: posted through the API, sent by a flag system, or detected from telemetry.

One change per flip: a post merges with the change telemetry detected for the
same flag within MONOENV_FLAG_MERGE_MINUTES, and a detection merges with a
posted change, as deploys do; a repeated post updates its change. Detection
compares each flag's cohort counts in the last MONOENV_FLAG_DETECT_MINUTES
with the MONOENV_FLAG_BASELINE_MINUTES before (flags/shares.py decides), and
looks at a flag again only once its windows hold no change already known.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from flags import control, shares, verdicts
from flags.models import ChangeSource, FlagChange, FlagSettings
from telemetry import flag_store

POSTED_FIELDS = ("environment", "services", "actor", "description", "url", "rollout")
# Which services evaluate a flag, and its control, are read over this much history.
SERVICES_LOOKBACK = timedelta(hours=1)


def record_change(fields: dict, *, source: str, now: datetime | None = None):
    """Create or update a change from a post or a webhook; return (change, created)."""
    now = now or timezone.now()
    fields = {key: value for key, value in fields.items() if value not in (None, "")}
    fields.setdefault("at", now)
    with transaction.atomic():
        existing = FlagChange.objects.select_for_update().near(
            fields["flag"], fields.get("environment", ""), fields["at"]
        )
        if existing is not None and (existing.source == ChangeSource.DETECTED or _same_post(
            existing, fields, source
        )):  # fmt: skip
            for key in POSTED_FIELDS:
                if key in fields:
                    setattr(existing, key, fields[key])
            # The flag system knows the exact time; detection only the minute.
            existing.at, existing.source = fields["at"], source
            existing.save()
            return existing, False
        change = FlagChange(source=source, **fields)
        _fill_from_telemetry(change)
        change.schedule_look(verdicts.next_look_after(None))
        change.save()
        return change, True


def _same_post(existing: FlagChange, fields: dict, source: str) -> bool:
    # A retried post or webhook delivery: same sender, same moment.
    return existing.source == source and existing.at == fields["at"]


def _fill_from_telemetry(change: FlagChange) -> None:
    start, end = change.at - SERVICES_LOOKBACK, change.at + SERVICES_LOOKBACK
    if not change.services:
        change.services = flag_store.services_of_flag(change.flag, start, end)
    if not change.environment:
        change.environment = flag_store.environment_of_flag(change.flag, start, end)
    before = flag_store.cohort_counts(change.flag, start, change.at)
    if not change.shares_before:
        change.shares_before = shares.shares(before)
    choose_control(change, before=before)


def choose_control(change: FlagChange, *, before: dict[str, int]) -> None:
    """Set the change's control cohort (flags/control.py decides)."""
    start, end = change.at - SERVICES_LOOKBACK, change.at + SERVICES_LOOKBACK
    override = FlagSettings.objects.filter(flag=change.flag).values_list("control", flat=True)
    chosen = control.choose_control(
        cohorts=set(flag_store.cohort_counts(change.flag, start, end)),
        before=before,
        defaults=flag_store.default_cohorts(change.flag, start, end),
        override=next(iter(override), ""),
    )
    change.control, change.control_reason = chosen.cohort, chosen.reason


def detect_changes(*, now: datetime | None = None) -> list[FlagChange]:
    """Record a change for every flag whose variant shares moved beyond noise."""
    now = now or timezone.now()
    recent = timedelta(minutes=settings.MONOENV_FLAG_DETECT_MINUTES)
    baseline = timedelta(minutes=settings.MONOENV_FLAG_BASELINE_MINUTES)
    window_start, baseline_start = now - recent, now - recent - baseline
    found = []
    for seen in flag_store.flags_seen(baseline_start, now):
        shift = shares.share_shift(
            flag_store.cohort_counts(seen.flag, baseline_start, window_start),
            flag_store.cohort_counts(seen.flag, window_start, now),
            alpha=settings.MONOENV_FLAG_DETECT_ALPHA,
            min_shift=settings.MONOENV_FLAG_MIN_SHARE_SHIFT,
            min_count=settings.MONOENV_FLAG_MIN_EVALUATIONS,
        )
        if shift.moved:
            change = _record_detected(seen, shift, baseline_start, now)
            if change is not None:
                found.append(change)
    return found


def _record_detected(seen, shift: shares.ShareShift, baseline_start: datetime, now: datetime):
    by_minute = flag_store.cohort_minute_counts(seen.flag, baseline_start, now)
    at = shares.change_minute(by_minute) or now
    if shift.kind == "stopped":
        # It stopped: the change is just after its last evaluation.
        at = max(by_minute) + timedelta(minutes=1) if by_minute else baseline_start
    with transaction.atomic():
        known = (
            FlagChange.objects.select_for_update()
            .filter(flag=seen.flag, at__gte=baseline_start - _merge_window(), at__lte=now)
            .order_by("-at")
            .first()
        )
        if known is not None:
            # A posted change in these windows is this shift; merge, once.
            if known.detected_at is None:
                _mark_detected(known, shift, at, by_minute)
                known.save()
            return None
        change = FlagChange(
            flag=seen.flag, at=at, source=ChangeSource.DETECTED, services=list(seen.services),
            description=_describe(shift),
        )  # fmt: skip
        _mark_detected(change, shift, at, by_minute)
        _fill_from_telemetry(change)
        change.schedule_look(verdicts.next_look_after(None))
        change.save()
        return change


def _merge_window() -> timedelta:
    return timedelta(minutes=settings.MONOENV_FLAG_MERGE_MINUTES)


def _mark_detected(change: FlagChange, shift, at: datetime, by_minute: dict) -> None:
    """Shares on either side of the change minute, and the detection's p-value."""
    before, after = {}, {}
    for minute, counts in by_minute.items():
        side = before if minute < at else after
        for cohort, count in counts.items():
            side[cohort] = side.get(cohort, 0) + count
    change.detected_at = at
    change.shares_before = {k: round(v, 4) for k, v in shares.shares(before).items()}
    change.shares_after = {k: round(v, 4) for k, v in shares.shares(after).items()}
    change.detection_p_value = shift.p_value


def _describe(shift: shares.ShareShift) -> str:
    if shift.kind == "started":
        return "started being evaluated"
    if shift.kind == "stopped":
        return "stopped being evaluated"
    moves = ", ".join(
        f"{cohort} {shift.before.get(cohort, 0):.0%} → {shift.after.get(cohort, 0):.0%}"
        for cohort in sorted(set(shift.before) | set(shift.after))
    )
    return f"variant shares moved: {moves}"
