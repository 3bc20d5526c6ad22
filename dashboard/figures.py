"""The rules behind every figure the dashboard shows, with no Django.

- A chart shows complete buckets only: a bucket is complete once it ended
  SETTLE ago, time enough for exporters to flush and the minute rollup to run.
  Ranges therefore end at the last complete bucket, never at "now".
- A rate is requests over the time the service (or version) actually served
  within the range: from its first span, or the range's start if later, to
  its last span, or the range's end if earlier. A service serves while any of
  its versions does (the union of their first-to-last spans). Time before a
  service's first span never counts, so a service that started five minutes
  ago shows its real rate, not a twelfth of it.
- Every page rates a range the same way: the overview's "1h" is the service
  page's "1h" (RANGES), the same complete minutes, the same served time.
- Percentages are of the requests that exist; no requests gives None ("—").
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)
# The rollup runs every minute and exporters flush every few seconds: a
# bucket that ended two minutes ago holds all its spans.
SETTLE = timedelta(minutes=2)
# Bucket starts are aligned on this origin, as telemetry.coarse_rollups.ORIGIN.
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def floor(moment: datetime, step: timedelta) -> datetime:
    return ORIGIN + ((moment - ORIGIN) // step) * step


def complete_until(now: datetime, step: timedelta) -> datetime:
    """The end of the last complete bucket of this step."""
    return floor(now - SETTLE, step)


@dataclass(frozen=True)
class TimeRange:
    name: str
    span: timedelta
    step: timedelta

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """Whole, complete buckets: the range ends where the last complete one ends."""
        end = complete_until(now, self.step)
        return end - self.span, end


RANGES = {
    item.name: item
    for item in (
        TimeRange("15m", timedelta(minutes=15), MINUTE),
        TimeRange("1h", timedelta(hours=1), MINUTE),
        TimeRange("6h", timedelta(hours=6), timedelta(minutes=5)),
        TimeRange("24h", timedelta(hours=24), timedelta(minutes=15)),
        TimeRange("7d", timedelta(days=7), timedelta(hours=1)),
        TimeRange("30d", timedelta(days=30), timedelta(hours=6)),
    )
}
# A long-lived service opens on its last six hours.
LONGEST_DEFAULT = "6h"


def fitting_range(age: timedelta | None, *, choices=RANGES, longest=LONGEST_DEFAULT) -> str:
    """The shortest range that holds all the data there is, up to `longest`."""
    names = list(choices)
    for name in names[: names.index(longest) + 1]:
        if age is not None and age <= choices[name].span:
            return name
    return longest


def served_seconds(
    intervals: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime
) -> float:
    """Seconds of [start, end) inside any of the (first span, last span) intervals."""
    clipped = sorted(
        (max(start, first), min(end, last)) for first, last in intervals if last > start
    )
    total, covered_to = 0.0, start
    for served_from, served_to in clipped:
        served_from = max(served_from, covered_to)
        if served_to > served_from:
            total += (served_to - served_from).total_seconds()
            covered_to = served_to
    return total


def rate(requests: int, seconds: float) -> float | None:
    """Requests per second over the served time; None when nothing was served."""
    if seconds <= 0:
        return None
    return round(requests / seconds, 4)


def pct(part: int | float, whole: int | float) -> float | None:
    return round(100 * part / whole, 3) if whole else None


def ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000, 3)


# SLO charts


def slo_chart_ranges(window_name: str, window_span: timedelta) -> dict[str, timedelta]:
    """The service page's ranges shorter than the SLO's window, then the whole window."""
    found = {name: item.span for name, item in RANGES.items() if item.span < window_span}
    found[window_name] = window_span
    return found


def fitting_slo_range(ranges: dict[str, timedelta], counted_for: timedelta | None) -> str:
    """The shortest range that holds every counted minute; the whole window when older."""
    for name, span in ranges.items():
        if counted_for is not None and counted_for <= span:
            return name
    return list(ranges)[-1]


def slo_chart_bounds(
    span: timedelta, *, window_start: datetime, counted_since: datetime | None,
    now: datetime, step_for,
) -> tuple[datetime, datetime, timedelta]:  # fmt: skip
    """An SLO chart's start, end and step for a range of `span`.

    It starts at the range's start, the window's or the first counted minute,
    whichever is latest, so a young SLO is not a dot at the right edge. Its step
    fits the time shown (`step_for`: minutes for the first hours, coarser
    later), and it ends where its last complete step ends, like every chart.
    """
    floor_start = max(window_start, floor(counted_since or now, MINUTE))
    step = step_for(max(now - max(now - span, floor_start), MINUTE))
    end = complete_until(now, step)
    start = max(end - span, floor_start)
    return min(start, end), end, step
