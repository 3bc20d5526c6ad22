"""Error-budget and burn-rate arithmetic, and SLO window boundaries.

Pure code with no Django imports. Objectives are fractions here (0.999), not
the percentages the models store. Thresholds come in as arguments.

Invariants kept here:
- A budget is (1 - objective) × the units (events, or minutes with traffic) of
  the whole span it covers. When the units were counted over only part of that
  span (a calendar period under way, or an SLO younger than its window), the
  span's units are projected from the rate seen so far (`period_budget`).
- Once the units cover the whole span, the budget is spent exactly when the
  SLI is below the objective: remaining = 1 - bad ÷ ((1 - objective) × units).
- Alert tiers of one SLO have strictly increasing long windows, so no two
  tiers can ever be the same alert.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CALENDAR_UNITS = ("month", "week")
_ROLLING_WINDOW = re.compile(r"^([1-9][0-9]{0,4})([dh])$")
_DURATION = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?$")

# The windows GET /api/v1/slos/{id} reports burn rates for.
STATUS_BURN_WINDOWS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
}

# The SRE Workbook's tiers for a 30-day SLO: severity, share of the budget
# that a burn over the long window consumes, long window. Each tier's short
# window is 1/12 of its long one (1h/5m, 6h/30m, 1d/2h, 3d/6h).
_WORKBOOK_TIERS = (
    ("page", 0.02, timedelta(hours=1)),
    ("page", 0.05, timedelta(hours=6)),
    ("ticket", 0.10, timedelta(days=1)),
    ("ticket", 0.10, timedelta(days=3)),
)
_SHORT_WINDOW_SHARE = 12
# Shorter SLO periods shrink the long windows in proportion from here, so a
# 7-day SLO is not judged over a 3-day window; 28 and 30 days keep the standard ones.
_FULL_WINDOWS_FROM = timedelta(days=28)
# The Workbook's shortest short window. Shrinking it in proportion gave a
# 7-day SLO a 1-minute short window: one minute's noise decided every page.
MIN_SHORT_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class Window:
    """Rolling (`rolling` set) or calendar (`calendar` is "month" or "week")."""

    rolling: timedelta | None = None
    calendar: str | None = None
    timezone: str = "UTC"

    def bounds(self, at: datetime) -> tuple[datetime, datetime]:
        """The current period as [start, end) in UTC; rolling ones end at `at`."""
        if self.rolling is not None:
            return at - self.rolling, at
        return calendar_period(self.calendar, self.timezone, at)

    def period(self, at: datetime) -> timedelta:
        start, end = self.bounds(at)
        return end - start


def parse_window(text: str, timezone: str = "UTC") -> Window:
    """`"30d"`, `"12h"`, `"month"` or `"week"`; raise ValueError otherwise."""
    if text in CALENDAR_UNITS:
        check_timezone(timezone)
        return Window(calendar=text, timezone=timezone)
    match = _ROLLING_WINDOW.match(text or "")
    if not match:
        raise ValueError(f"window must be '<N>d', '<N>h', 'month' or 'week', not {text!r}")
    count, unit = int(match[1]), match[2]
    return Window(rolling=timedelta(days=count) if unit == "d" else timedelta(hours=count))


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def calendar_period(unit: str, timezone: str, at: datetime) -> tuple[datetime, datetime]:
    """The calendar month or ISO week (from Monday) holding `at`, as UTC instants.

    Boundaries are local midnights, so a month with a DST change is an hour
    shorter or longer than its days suggest.
    """
    zone = check_timezone(timezone)
    local = at.astimezone(zone)
    if unit == "month":
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = datetime(year, month, 1, tzinfo=zone)
    elif unit == "week":
        monday = local.date() - timedelta(days=local.weekday())
        start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
        next_monday = monday + timedelta(days=7)
        end = datetime(next_monday.year, next_monday.month, next_monday.day, tzinfo=zone)
    else:
        raise ValueError(f"calendar windows are 'month' or 'week', not {unit!r}")
    return start.astimezone(UTC), end.astimezone(UTC)


def error_ratio(good: int, total: int) -> float:
    return (total - good) / total if total else 0.0


def burn_rate(good: int, total: int, objective: float) -> float:
    """How many times faster than sustainable the budget is being spent."""
    return error_ratio(good, total) / (1 - objective)


def error_budget(total: float, objective: float) -> float:
    """The bad events (or slices) the objective allows out of `total`."""
    return (1 - objective) * total


def budget_remaining_pct(bad: float, budget: float) -> float:
    """Percent of the budget left; negative once it is overspent."""
    if budget == 0:
        return 100.0 if bad == 0 else float("-inf")
    return 100 * (1 - bad / budget)


def budget_consumed_by_burn(rate: float, window: timedelta, period: timedelta) -> float:
    """Share of a whole period's budget spent by burning at `rate` for `window`."""
    return rate * (window / period)


@dataclass(frozen=True)
class Budget:
    """The error budget over `span`: bad units allowed, spent and left."""

    allowed: float
    consumed: int
    remaining_pct: float
    span: timedelta
    projected: bool

    @property
    def consumed_pct(self) -> float:
        """100 - remaining_pct, so used and left always add up to 100%."""
        return 100 - self.remaining_pct


def projected_units(units: float, *, covered: timedelta, span: timedelta) -> float:
    """The units `span` would hold at the rate `units` arrived over `covered`."""
    if covered <= timedelta(0) or covered >= span:
        return float(units)
    return units * (span / covered)


def period_budget(
    *, bad: int, units: int, objective: float, covered: timedelta, span: timedelta
) -> Budget:
    """The budget of the whole `span`, from `units` counted over `covered` of it.

    Early in a calendar month, `covered` is the days so far and the budget is
    the month's, projected from the traffic so far, not a share of the few
    events seen yet.
    """
    allowed = error_budget(projected_units(units, covered=covered, span=span), objective)
    return Budget(
        allowed=allowed,
        consumed=bad,
        remaining_pct=budget_remaining_pct(bad, allowed),
        span=span,
        projected=timedelta(0) < covered < span,
    )


def time_to_exhaustion(
    remaining_pct: float, rate: float, span: timedelta, *, resets_in: timedelta | None = None
) -> timedelta | None:
    """When the budget left runs out at this burn rate; None if it never does.

    `span` is the time the whole budget covers; at burn rate 1 it lasts exactly
    that long, so the share left lasts share × span ÷ rate. A budget that
    resets (a calendar period ends) before then never runs out: None.
    """
    if remaining_pct <= 0:
        return timedelta(0)
    if rate <= 0:
        return None
    left = span * (remaining_pct / 100) / rate
    if resets_in is not None and left >= resets_in:
        return None
    return left


def is_learning(
    *, data_age: timedelta, events: int, period: timedelta, min_age: timedelta, min_events: int
) -> bool:
    """Too young or too quiet for its budget to be judged (a gate must not block on it).

    Young: its first counted minute is less than min(min_age, period) ago.
    Quiet: fewer than `min_events` events in the window.
    """
    return data_age < min(min_age, period) or events < min_events


@dataclass(frozen=True)
class AlertWindow:
    severity: str
    budget_share: float
    long: timedelta
    short: timedelta
    burn_rate: float

    @property
    def name(self) -> str:
        return f"{format_duration(self.long)}/{format_duration(self.short)}"


def alert_windows(period: timedelta) -> list[AlertWindow]:
    """The multi-window burn-rate tiers for an SLO period.

    Every period keeps the Workbook's share of budget per tier: the threshold
    is share × period ÷ long window (14.4 for 1h of a 30-day SLO, 13.44 for
    28 days). Long windows are whole minutes, at least one. When shrinking
    would give a tier the long window of the tier before it (1h and 2h SLOs),
    it takes the next minute up, so each tier's long window is its own.

    The short window is 1/12 of the long one rounded up to whole minutes, but
    at least MIN_SHORT_WINDOW, and never longer than the long window itself.
    """
    scale = min(1.0, period / _FULL_WINDOWS_FROM)
    tiers: list[AlertWindow] = []
    for severity, share, long in _WORKBOOK_TIERS:
        long_window = _whole_minutes(long * scale)
        if tiers and long_window <= tiers[-1].long:
            long_window = tiers[-1].long + timedelta(minutes=1)
        tiers.append(
            AlertWindow(
                severity, share, long_window, short_window(long_window),
                share * (period / long_window),
            )
        )  # fmt: skip
    return tiers


def short_window(long_window: timedelta) -> timedelta:
    """1/12 of `long_window` in whole minutes, rounded up; at least MIN_SHORT_WINDOW."""
    twelfth = math.ceil(long_window / timedelta(minutes=1) / _SHORT_WINDOW_SHARE)
    return min(long_window, max(MIN_SHORT_WINDOW, timedelta(minutes=twelfth)))


def _whole_minutes(duration: timedelta) -> timedelta:
    return max(timedelta(minutes=1), timedelta(minutes=round(duration / timedelta(minutes=1))))


def format_duration(duration: timedelta) -> str:
    """Compact form such as "3d", "1h", "5m" or "1d6h"."""
    minutes = int(duration / timedelta(minutes=1))
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return "".join(parts) or "0m"


def parse_duration(text: str) -> timedelta:
    """The inverse of format_duration()."""
    match = _DURATION.match(text or "")
    if not text or not match:
        raise ValueError(f"not a duration: {text!r}")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def history_step(span: timedelta, *, max_points: int = 400) -> timedelta:
    """The coarsest-needed step that draws `span` in at most `max_points` points."""
    for step_minutes in (1, 5, 15, 30, 60, 120, 360, 720, 1440):
        step = timedelta(minutes=step_minutes)
        if span / step <= max_points:
            return step
    return timedelta(days=1)
