"""The state of an SLO at an instant: SLI, budget, burn rates, burndown.

Everything is read from the per-minute counts (slo.minutes) in two queries.
Under occurrences budgeting the units are events; under timeslices they are
minutes with traffic, a minute being bad when its own SLI misses the target.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from slo import maths
from slo.models import SLO, Budgeting

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Counts:
    bad: int
    units: int
    events: int

    @property
    def good(self) -> int:
        return self.units - self.bad


@dataclass
class Status:
    unit: str
    good: int
    total: int
    sli: float | None
    objective: float
    budget_total: float
    budget_consumed: float
    budget_remaining_pct: float
    burn_rates: dict[str, float]
    time_to_exhaustion: timedelta | None
    window_start: datetime
    window_end: datetime
    complete_until: datetime
    budget_history: list[dict] = field(default_factory=list)


def _minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def rolling_range(duration: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """The minutes of the last `duration`, the current partial minute included."""
    end = _minute_floor(now) + MINUTE
    return end - duration, end


def window_range(slo: SLO, now: datetime) -> tuple[datetime, datetime]:
    window = slo.window_spec
    if window.rolling is not None:
        return rolling_range(window.rolling, now)
    start, end = window.bounds(now)
    return start, min(end, _minute_floor(now) + MINUTE)


def _unit_sql(slo: SLO) -> tuple[str, str, list]:
    if slo.budgeting == Budgeting.TIMESLICES:
        # Exact decimal comparison: good / total >= target.
        bad = "CASE WHEN good >= %s::numeric * total THEN 0 ELSE 1 END"
        return bad, "1", [slo.timeslice_target / 100]
    return "total - good", "total", []


def counts(slo: SLO, ranges: dict[str, tuple[datetime, datetime]]) -> dict[str, Counts]:
    """Bad units, units and events of the SLO in each [start, end) range."""
    bad, units, unit_params = _unit_sql(slo)
    columns, params = [], []
    for start, end in ranges.values():
        columns.append(
            "coalesce(sum(bad) FILTER (WHERE minute >= %s AND minute < %s), 0),"
            "coalesce(sum(units) FILTER (WHERE minute >= %s AND minute < %s), 0),"
            "coalesce(sum(total) FILTER (WHERE minute >= %s AND minute < %s), 0)"
        )
        params += [start, end] * 3
    lowest = min(start for start, _ in ranges.values())
    highest = max(end for _, end in ranges.values())
    sql = (
        f"SELECT {', '.join(columns)} FROM (SELECT minute, total, {bad} AS bad, {units} AS units "
        "FROM slo_slominute WHERE slo_id = %s AND minute >= %s AND minute < %s) AS slo_minutes"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *unit_params, slo.pk, lowest, highest])
        row = cursor.fetchone()
    return {
        key: Counts(*(int(value) for value in row[3 * index : 3 * index + 3]))
        for index, key in enumerate(ranges)
    }


def burn_rate(counts_in_window: Counts, objective: float) -> float:
    return maths.burn_rate(counts_in_window.good, counts_in_window.units, objective)


def status(slo: SLO, *, now: datetime, history: bool = True) -> Status:
    start, end = window_range(slo, now)
    step = maths.history_step(end - start)
    buckets = _window_buckets(slo, start, end, step)
    in_window = Counts(*(sum(bucket[i] for bucket in buckets.values()) for i in range(3)))
    found = counts(
        slo, {key: rolling_range(d, now) for key, d in maths.STATUS_BURN_WINDOWS.items()}
    )
    objective = slo.objective_ratio
    period = slo.window_spec.period(now)
    if slo.budgeting == Budgeting.TIMESLICES:
        budget_total = maths.error_budget(period / MINUTE, objective)
    else:
        budget_total = maths.error_budget(in_window.units, objective)
    remaining = maths.budget_remaining_pct(in_window.bad, budget_total)
    burn_rates = {key: burn_rate(found[key], objective) for key in maths.STATUS_BURN_WINDOWS}
    complete_until = now - timedelta(minutes=settings.MONOENV_ROLLUP_LATENESS_MINUTES)
    return Status(
        unit="minutes" if slo.budgeting == Budgeting.TIMESLICES else "events",
        good=in_window.good,
        total=in_window.units,
        sli=in_window.good / in_window.units if in_window.units else None,
        objective=float(slo.objective),
        budget_total=budget_total,
        budget_consumed=in_window.bad,
        budget_remaining_pct=remaining,
        burn_rates=burn_rates,
        time_to_exhaustion=maths.time_to_exhaustion(remaining, burn_rates["1h"], period),
        window_start=start,
        window_end=end,
        complete_until=complete_until,
        budget_history=(
            _burndown(buckets, start, min(end, now), step, budget_total, complete_until)
            if history
            else []
        ),
    )


def _window_buckets(
    slo: SLO, start: datetime, end: datetime, step: timedelta
) -> dict[datetime, tuple]:
    """(bad, units, events) per history step of the window, in one pass."""
    bad, units, unit_params = _unit_sql(slo)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT date_bin(%s, minute, %s), sum({bad}), sum({units}), sum(total) "
            "FROM slo_slominute WHERE slo_id = %s AND minute >= %s AND minute < %s GROUP BY 1",
            [step, start, *unit_params, slo.pk, start, end],
        )
        return {row[0]: tuple(int(value) for value in row[1:]) for row in cursor.fetchall()}


def _burndown(
    buckets: dict,
    start: datetime,
    end: datetime,
    step: timedelta,
    budget_total: float,
    complete_until: datetime,
) -> list[dict]:
    """Remaining budget (percent) through the window, for a burndown chart."""
    points = [{"at": start, "remaining_pct": 100.0, "complete": True}]
    consumed = 0
    bucket = start
    while bucket < end:
        consumed += buckets.get(bucket, (0,))[0]
        at = min(bucket + step, end)
        remaining = maths.budget_remaining_pct(consumed, budget_total)
        points.append({"at": at, "remaining_pct": remaining, "complete": at <= complete_until})
        bucket += step
    return points
