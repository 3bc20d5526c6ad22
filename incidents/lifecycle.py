"""When an incident started, and when the data says it was mitigated and resolved.

Pure code: per-minute counts in, times out. No Django, no settings; the
thresholds and periods come in as values (incidents/jobs.py passes settings).

- A minute *burns* when its bad share exceeds the threshold, which is the
  SLO's error budget ratio (1 - objective) for an SLO, so burning means a burn
  rate above 1; for a route or a deploy it is a rate between its baseline and
  its regressed value.
- The regression started at the first minute of the last run of burning
  minutes that reaches detection; runs may have short gaps (a quiet minute
  inside an outage does not split it).
- It was mitigated when the burn rate, over a short rolling window, fell below
  1 and stayed there for a sustained period: at the change (rollback, fix,
  flag revert) that came just before the calm, or at the calm itself when no
  change explains it.
- It was resolved when every signal closed and stayed closed for a sustained
  period: at the last closing.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class MinuteCounts:
    minute: datetime
    bad: float
    total: float


def burning(counts: MinuteCounts, threshold: float) -> bool:
    return counts.total > 0 and counts.bad / counts.total > threshold


def regression_start(
    minutes: list[MinuteCounts],
    *,
    threshold: float,
    detected_at: datetime,
    reach: timedelta,
    max_gap_minutes: int = 2,
    not_before: datetime | None = None,
) -> datetime | None:
    """The first minute of the burning run that reaches within `reach` of detection."""
    hot = sorted(
        m.minute
        for m in minutes
        if burning(m, threshold)
        and m.minute <= detected_at
        and (not_before is None or m.minute >= _floor(not_before))
    )
    if not hot or hot[-1] < detected_at - reach:
        return None
    start = hot[-1]
    for earlier in reversed(hot[:-1]):
        if start - earlier > MINUTE * (max_gap_minutes + 1):
            break
        start = earlier
    return start


def rolling(minutes: list[MinuteCounts], *, width: int) -> list[MinuteCounts]:
    """Each minute's counts summed with the width - 1 minutes before it (gaps count as 0)."""
    by_minute = {m.minute: m for m in minutes}
    out = []
    for m in sorted(by_minute):
        window = [by_minute.get(m - MINUTE * back) for back in range(width)]
        bad = sum(w.bad for w in window if w)
        total = sum(w.total for w in window if w)
        out.append(MinuteCounts(m, bad, total))
    return out


@dataclass(frozen=True)
class Mitigation:
    at: datetime
    calm_from: datetime
    change_at: datetime | None


def mitigation(
    minutes: list[MinuteCounts],
    *,
    threshold: float,
    started_at: datetime,
    changes: list[datetime],
    sustain: timedelta,
    now: datetime,
    width: int = 5,
    slack: timedelta = 2 * MINUTE,
) -> Mitigation | None:
    """When the burn fell below 1 for good, if it has stayed below for `sustain` by `now`.

    Needs traffic after the calm began: silence is not recovery.
    """
    smoothed = [m for m in rolling(minutes, width=width) if m.minute >= _floor(started_at)]
    hot = [m.minute for m in smoothed if burning(m, threshold)]
    if not hot:
        return None
    calm_from = hot[-1] + MINUTE
    if now - calm_from < sustain:
        return None
    if not any(m.total > 0 and m.minute >= calm_from for m in smoothed):
        return None
    explaining = [c for c in changes if started_at <= c <= calm_from + slack]
    change_at = max(explaining) if explaining else None
    # The rolling window lags the change by up to its width: the change is the moment.
    if change_at is not None and calm_from - change_at > MINUTE * (width + 2) + slack:
        change_at = None
    return Mitigation(at=change_at or calm_from, calm_from=calm_from, change_at=change_at)


def resolution(closed_at: list[datetime | None], *, sustain: timedelta, now: datetime):
    """The last closing, once every signal is closed and has stayed so for `sustain`."""
    if not closed_at or any(at is None for at in closed_at):
        return None
    last = max(closed_at)
    return last if now - last >= sustain else None


def _floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)
