"""The state of SLOs at an instant: SLI, budget, burn rates per tier, burndown.

This is slo's read interface for the other apps: `status()` for one SLO,
`statuses()` for many in one query, `spent_budgets()` for the gate and
`version_budget_use()` for a deploy's share of a budget.

Invariants:
- The SLI and every budget figure of one status come from one read of the
  per-minute counts (slo.minutes), as of the same moment: used + left = 100%,
  the burndown ends at the remaining budget, and the SLI series sums to the
  SLI. Burn rates and tiers come from one read of the rolling windows.
- A burn-rate window of N minutes is the last N *complete* minutes
  (`burn_range`): the minute under way is never judged as if it were whole,
  so a short window cannot swing with the few spans of a minute just begun.
  The SLO window's own counts do include it: its events are real, and a
  budget only adds them up.
- Units are events under occurrences budgeting, and minutes with traffic
  under timeslices (a minute is bad when its own SLI misses the target).
  Minutes without traffic count for neither the SLI nor the budget, so the
  two always agree: with the window's units all counted, an SLI below the
  objective is a spent budget.
- The budget is the whole window's (maths.period_budget): a calendar period
  under way, or an SLO whose counts start inside its window, projects the
  window's units from the rate seen so far. Such an SLO is `learning` while
  its counts are younger than MONOENV_SLO_LEARNING_HOURS or hold fewer than
  MONOENV_SLO_LEARNING_MIN_EVENTS events, and a learning budget never blocks.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from slo import maths
from slo.models import SLO, Alert, Budgeting, Severity, SLOMinute
from telemetry import spans

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
_SEVERITY_ORDER = {Severity.PAGE: 0, Severity.TICKET: 1}


@dataclass(frozen=True)
class Counts:
    bad: int
    units: int
    events: int

    @property
    def good(self) -> int:
        return self.units - self.bad


NO_COUNTS = Counts(0, 0, 0)


@dataclass(frozen=True)
class TierState:
    """One alert tier of an SLO, with its burn rates now and its open alert."""

    severity: str
    long_window: timedelta
    short_window: timedelta
    threshold: float
    long_burn_rate: float
    short_burn_rate: float
    long_events: int
    short_events: int
    alert: Alert | None = None

    @property
    def windows(self) -> str:
        long, short = (maths.format_duration(w) for w in (self.long_window, self.short_window))
        return f"{long}/{short}"

    @property
    def firing(self) -> bool:
        return self.alert is not None

    def burning(self, min_events: int) -> bool:
        """The evaluator's firing rule: both windows over the threshold, with traffic."""
        return (
            self.long_burn_rate > self.threshold
            and self.short_burn_rate > self.threshold
            and min(self.long_events, self.short_events) >= min_events
        )


@dataclass
class Status:
    unit: str
    good: int
    total: int
    events: int
    sli: float | None
    objective: float
    budget_total: float
    budget_consumed: float
    budget_remaining_pct: float
    budget_projected: bool
    learning: bool
    counted_since: datetime | None
    burn_rates: dict[str, float]
    tiers: list[TierState]
    time_to_exhaustion: timedelta | None
    window_start: datetime
    window_end: datetime
    complete_until: datetime
    budget_history: list[dict] = field(default_factory=list)
    sli_history: list[dict] = field(default_factory=list)

    @property
    def budget_consumed_pct(self) -> float:
        return 100 - self.budget_remaining_pct

    @property
    def spent(self) -> bool:
        """The budget is used up and the SLO has seen enough to say so."""
        return self.total > 0 and self.budget_remaining_pct <= 0 and not self.learning

    @property
    def firing_tiers(self) -> list[TierState]:
        """Tiers with an open alert, worst first: pages, then the shortest long window.

        The shortest window is the fast-burn tier, the one that spends the
        budget soonest (1h/5m at 14.4× before 6h/30m at 6× for 30 days).
        """
        firing = [tier for tier in self.tiers if tier.firing]
        return sorted(firing, key=lambda t: (_SEVERITY_ORDER.get(t.severity, 9), t.long_window))

    @property
    def worst_firing_tier(self) -> TierState | None:
        firing = self.firing_tiers
        return firing[0] if firing else None


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def rolling_range(duration: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """The minutes of the last `duration`, the current partial minute included."""
    end = minute_floor(now) + MINUTE
    return end - duration, end


def burn_range(duration: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """The last `duration` of complete minutes: at 12:00:30 the 5m window is 11:55-11:59."""
    end = minute_floor(now)
    return end - duration, end


def window_range(slo: SLO, now: datetime) -> tuple[datetime, datetime]:
    window = slo.window_spec
    if window.rolling is not None:
        return rolling_range(window.rolling, now)
    start, end = window.bounds(now)
    return start, min(end, minute_floor(now) + MINUTE)


def burn_rate(counts_in_window: Counts, objective: float) -> float:
    return maths.burn_rate(counts_in_window.good, counts_in_window.units, objective)


def _durations(slos: Iterable[SLO], now: datetime) -> list[timedelta]:
    """Every rolling window the statuses need: the status windows and all tier windows."""
    needed = set(maths.STATUS_BURN_WINDOWS.values())
    for slo in slos:
        for tier in maths.alert_windows(slo.window_spec.period(now)):
            needed.update((tier.long, tier.short))
    return sorted(needed)


_TRIPLE = "coalesce(sum(bad) {f}, 0), coalesce(sum(units) {f}, 0), coalesce(sum(total) {f}, 0)"

# The rows of the burn windows, as (is_hour, at, total, bad, units): every minute
# of a timeslices SLO, whose units are minutes with traffic, bad when the
# minute's own SLI (exact decimal comparison, good / total >= target) misses
# the target; the edge minutes and whole hours of an occurrences SLO.
_TIMESLICE_MINUTES = """
    SELECT false, m.minute, m.total,
           CASE WHEN m.total > 0 AND m.good < p.target * m.total THEN 1 ELSE 0 END,
           CASE WHEN m.total > 0 THEN 1 ELSE 0 END
    FROM slo_slominute AS m
    WHERE p.target IS NOT NULL AND m.slo_id = p.slo_id AND m.minute >= %s AND m.minute < %s
"""
_EDGE_MINUTES = """
    SELECT false, m.minute, m.total, m.total - m.good, m.total FROM slo_slominute AS m
    WHERE p.target IS NULL AND m.slo_id = p.slo_id AND m.minute >= %s AND m.minute < %s
"""
_WHOLE_HOURS = """
    SELECT true, h.hour, h.total, h.total - h.good, h.total FROM slo_slohour AS h
    WHERE p.target IS NULL AND h.slo_id = p.slo_id AND h.hour >= %s AND h.hour < %s
"""
# Whether row r counts in one burn window: an hour row if it is one of the
# window's whole hours; a minute row if it is in the window, and (occurrences)
# outside those hours. Every row read lies before the windows' common end.
# This test alone decides what counts: the ranges read only bound the rows.
_IN_BURN_WINDOW = """
    CASE WHEN r.is_hour THEN r.at >= %s AND r.at < %s
         ELSE r.at >= %s AND (p.target IS NOT NULL OR r.at < %s OR r.at >= %s) END
"""


@dataclass(frozen=True)
class _Read:
    first_minute: datetime | None
    window: Counts
    rolling: dict[timedelta, Counts]


def _whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole UTC hours inside [start, end), as [first, last); empty as (end, end)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first = start.replace(minute=0) + (HOUR if start.minute else timedelta(0))
    last = end.replace(minute=0)
    return (first, last) if first < last else (end, end)


@dataclass(frozen=True)
class _BurnPlan:
    """Where the burn windows [start, end) of an occurrences SLO are read.

    Each window takes its whole UTC hours from slo_slohour and the minutes
    at its two edges; `minutes` is the union of every window's edge minutes,
    `hours` the span of every window's whole hours, so each row is read once.
    """

    windows: list[tuple[datetime, tuple[datetime, datetime]]]  # start, whole hours
    minutes: list[tuple[datetime, datetime]]
    hours: tuple[datetime, datetime] | None


def _merged(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of half-open ranges, as disjoint ranges in order (empty ones dropped)."""
    merged: list[tuple[datetime, datetime]] = []
    for low, high in sorted(r for r in ranges if r[0] < r[1]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _burn_plan(durations: list[timedelta], end: datetime) -> _BurnPlan:
    windows = [(end - d, _whole_hours(end - d, end)) for d in durations]
    edges = [r for start, (first, last) in windows for r in ((start, first), (last, end))]
    spans = [hours for _, hours in windows if hours[0] < hours[1]]
    hours = (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None
    return _BurnPlan(windows, _merged(edges), hours)


def _read(slos: list[SLO], now: datetime, *, window: bool = True) -> dict[int, _Read]:
    """Window counts, burn-window counts and first counted minute, per SLO, in one query.

    An occurrences SLO sums slo_slohour for the whole hours of its window and
    of each burn window, and minutes at their edges (timeslices need each
    minute). Without `window` the window's counts are left at zero (the
    caller sums its own buckets instead).
    """
    durations = _durations(slos, now)
    _, end = burn_range(durations[-1], now)
    values, params = [], []
    for slo in slos:
        start, window_end = window_range(slo, now)
        window_end = window_end if window else start
        target = slo.timeslice_target / 100 if slo.budgeting == Budgeting.TIMESLICES else None
        hours = _whole_hours(start, window_end) if target is None else (window_end, window_end)
        values.append("(%s::bigint, %s::timestamptz, %s::timestamptz, %s::timestamptz, "
                      "%s::timestamptz, %s::numeric)")  # fmt: skip
        params += [slo.pk, start, window_end, *hours, target]
    plan = _burn_plan(durations, end)
    flags, flag_params = [], []
    for index, (start, hours) in enumerate(plan.windows):
        flags.append(f"{_IN_BURN_WINDOW} AS in_{index}")
        flag_params += [*hours, start, *hours]
    rolling = [_TRIPLE.format(f=f"FILTER (WHERE in_{i})") for i in range(len(durations))]
    parts, part_params = [_TIMESLICE_MINUTES], [end - durations[-1], end]
    for low, high in plan.minutes:
        parts.append(_EDGE_MINUTES)
        part_params += [low, high]
    if plan.hours is not None:
        parts.append(_WHOLE_HOURS)
        part_params += list(plan.hours)
    sql = f"""
        WITH p (slo_id, win_start, win_end, hours_start, hours_end, target)
            AS (VALUES {", ".join(values)})
        SELECT p.slo_id, first.minute, w.*, r.*
        FROM p
        CROSS JOIN LATERAL (
            SELECT min(f.minute) AS minute FROM slo_slominute AS f
            WHERE f.slo_id = p.slo_id AND f.total > 0
        ) AS first
        CROSS JOIN LATERAL (
            SELECT CASE WHEN p.target IS NULL THEN coalesce(sum(m.total - m.good), 0)
                        ELSE count(*) FILTER (WHERE m.total > 0 AND m.good < p.target * m.total)
                   END,
                   CASE WHEN p.target IS NULL THEN coalesce(sum(m.total), 0)
                        ELSE count(*) FILTER (WHERE m.total > 0) END,
                   coalesce(sum(m.total), 0)
            FROM (
                SELECT m.good, m.total FROM slo_slominute AS m
                WHERE m.slo_id = p.slo_id AND m.minute >= p.win_start AND m.minute < p.hours_start
                UNION ALL
                SELECT h.good, h.total FROM slo_slohour AS h
                WHERE h.slo_id = p.slo_id AND h.hour >= p.hours_start AND h.hour < p.hours_end
                UNION ALL
                SELECT m.good, m.total FROM slo_slominute AS m
                WHERE m.slo_id = p.slo_id AND m.minute >= p.hours_end AND m.minute < p.win_end
            ) AS m
        ) AS w
        CROSS JOIN LATERAL (
            SELECT {", ".join(rolling)} FROM (
                SELECT r.total, r.bad, r.units, {", ".join(flags)}
                FROM ({" UNION ALL ".join(parts)}) AS r (is_hour, at, total, bad, units)
            ) AS r
        ) AS r
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *flag_params, *part_params])
        rows = cursor.fetchall()
    reads = {}
    for row in rows:
        triples = [Counts(*(int(v) for v in row[i : i + 3])) for i in range(2, len(row), 3)]
        reads[row[0]] = _Read(row[1], triples[0], dict(zip(durations, triples[1:], strict=True)))
    return reads


def _budget(slo: SLO, counts: Counts, first_minute: datetime | None, now: datetime):
    """The whole window's budget, and when the window's budget resets (calendar only)."""
    window = slo.window_spec
    start, end = window.bounds(now)
    if window.rolling is not None:
        start, _ = window_range(slo, now)
        span, resets_in = window.rolling, None
        young = first_minute is None or first_minute > start
        covered = (now - (first_minute or now)) if young else span
    else:
        counted_from = min(max(start, first_minute or now), now)
        span, covered, resets_in = end - counted_from, now - counted_from, end - now
    budget = maths.period_budget(
        bad=counts.bad, units=counts.units, objective=slo.objective_ratio,
        covered=covered, span=span,
    )  # fmt: skip
    return budget, resets_in


def _tiers(slo: SLO, read: _Read, now: datetime, open_alerts: dict) -> list[TierState]:
    objective = slo.objective_ratio
    states = []
    for tier in maths.alert_windows(slo.window_spec.period(now)):
        long, short = read.rolling[tier.long], read.rolling[tier.short]
        states.append(
            TierState(
                severity=tier.severity, long_window=tier.long, short_window=tier.short,
                threshold=tier.burn_rate, long_burn_rate=burn_rate(long, objective),
                short_burn_rate=burn_rate(short, objective), long_events=long.events,
                short_events=short.events, alert=open_alerts.get(tier.long),
            )
        )  # fmt: skip
    return states


def _assemble(slo: SLO, read: _Read, *, now: datetime, open_alerts: dict) -> Status:
    start, end = window_range(slo, now)
    counts = read.window
    budget, resets_in = _budget(slo, counts, read.first_minute, now)
    burn_rates = {
        key: burn_rate(read.rolling[duration], slo.objective_ratio)
        for key, duration in maths.STATUS_BURN_WINDOWS.items()
    }
    data_age = now - read.first_minute if read.first_minute else timedelta(0)
    learning = maths.is_learning(
        data_age=data_age, events=counts.events, period=slo.window_spec.period(now),
        min_age=timedelta(hours=settings.MONOENV_SLO_LEARNING_HOURS),
        min_events=settings.MONOENV_SLO_LEARNING_MIN_EVENTS,
    )  # fmt: skip
    return Status(
        unit="minutes" if slo.budgeting == Budgeting.TIMESLICES else "events",
        good=counts.good,
        total=counts.units,
        events=counts.events,
        sli=counts.good / counts.units if counts.units else None,
        objective=float(slo.objective),
        budget_total=budget.allowed,
        budget_consumed=counts.bad,
        budget_remaining_pct=budget.remaining_pct,
        budget_projected=budget.projected,
        learning=learning,
        counted_since=read.first_minute,
        burn_rates=burn_rates,
        tiers=_tiers(slo, read, now, open_alerts),
        time_to_exhaustion=maths.time_to_exhaustion(
            budget.remaining_pct, burn_rates["1h"], budget.span, resets_in=resets_in
        ),
        window_start=start,
        window_end=end,
        complete_until=now - timedelta(minutes=settings.MONOENV_ROLLUP_LATENESS_MINUTES),
    )


def _open_alerts(slo_ids: list[int]) -> dict[int, dict[timedelta, Alert]]:
    found: dict[int, dict[timedelta, Alert]] = {pk: {} for pk in slo_ids}
    for alert in Alert.objects.open().filter(slo_id__in=slo_ids):
        found[alert.slo_id][alert.long_window] = alert
    return found


def statuses(
    slos: Iterable[SLO], *, now: datetime, open_alerts: dict | None = None
) -> dict[int, Status]:
    """The status of each SLO, without history, in two queries however many SLOs."""
    slos = list(slos)
    if not slos:
        return {}
    reads = _read(slos, now)
    alerts = open_alerts if open_alerts is not None else _open_alerts([s.pk for s in slos])
    return {
        slo.pk: _assemble(slo, reads[slo.pk], now=now, open_alerts=alerts.get(slo.pk, {}))
        for slo in slos
    }


def status(
    slo: SLO, *, now: datetime, history: bool = True, open_alerts: dict | None = None
) -> Status:
    """One SLO's status; with `history`, its burndown and SLI series too.

    With history, the window's totals are the sums of the same buckets the
    series are drawn from, so the burndown ends exactly at the remaining budget.
    """
    alerts = {slo.pk: open_alerts} if open_alerts is not None else None
    if not history:
        return statuses([slo], now=now, open_alerts=alerts)[slo.pk]
    read = _read([slo], now, window=False)[slo.pk]
    start, end = window_range(slo, now)
    step = maths.history_step(end - start)
    buckets = _window_buckets(slo, start, end, step)
    in_window = Counts(*(sum(bucket[i] for bucket in buckets.values()) for i in range(3)))
    read = replace(read, window=in_window)
    alerts = alerts if alerts is not None else _open_alerts([slo.pk])
    found = _assemble(slo, read, now=now, open_alerts=alerts[slo.pk])
    found.budget_history = _burndown(buckets, start, min(end, now), step, found)
    found.sli_history = _sli_series(buckets, start, min(end, now), step, found.complete_until)
    return found


def tier_states(slo: SLO, *, now: datetime, open_alerts: dict) -> list[TierState]:
    """Only the tiers, without reading the window: the evaluator's cheap first look."""
    read = _read([slo], now, window=False)[slo.pk]
    return _tiers(slo, read, now, open_alerts)


def spent_budgets(service: str, *, now: datetime) -> list[tuple[SLO, Status]]:
    """The service's SLOs whose budget is spent, learning ones left out (the gate's guard)."""
    slos = list(SLO.objects.for_service(service))
    found = statuses(slos, now=now)
    return [(slo, found[slo.pk]) for slo in slos if found[slo.pk].spent]


def _unit_sql(slo: SLO) -> tuple[str, str, list]:
    """_UNITS for one SLO, written out for its budgeting: the per-row work of a long scan."""
    if slo.budgeting == Budgeting.TIMESLICES:
        bad = "CASE WHEN total > 0 AND good < %s::numeric * total THEN 1 ELSE 0 END"
        return bad, "CASE WHEN total > 0 THEN 1 ELSE 0 END", [slo.timeslice_target / 100]
    return "total - good", "total", []


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


def _steps(start: datetime, end: datetime, step: timedelta):
    bucket = start
    while bucket < end:
        yield bucket, min(bucket + step, end)
        bucket += step


def _burndown(buckets: dict, start, end, step, found: Status) -> list[dict]:
    """Remaining budget (percent) through the window, against the window's budget."""
    points = [{"at": start, "remaining_pct": 100.0, "complete": True}]
    consumed = 0
    for bucket, at in _steps(start, end, step):
        consumed += buckets.get(bucket, (0,))[0]
        remaining = maths.budget_remaining_pct(consumed, found.budget_total)
        points.append(
            {"at": at, "remaining_pct": remaining, "complete": at <= found.complete_until}
        )
    return points


def _sli_series(buckets: dict, start, end, step, complete_until: datetime) -> list[dict]:
    """The SLI of each step with traffic, on the burndown's steps (maths.history_step)."""
    series = []
    for bucket, at in _steps(start, end, step):
        bad, units, events = buckets.get(bucket, (0, 0, 0))
        if units:
            series.append(
                {"at": bucket, "sli": (units - bad) / units, "good": units - bad,
                 "total": units, "events": events, "complete": at <= complete_until}
            )  # fmt: skip
    return series


# History steps start on this grid, as telemetry's rollup buckets do, so a
# chart's steps stay put from one poll to the next.
HISTORY_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HistoryStep:
    """One step of an SLO's history: its units, and the budget left at its end."""

    start: datetime
    end: datetime
    bad: int
    units: int
    events: int
    remaining_pct: float

    @property
    def sli(self) -> float | None:
        return (self.units - self.bad) / self.units if self.units else None


@dataclass(frozen=True)
class History:
    start: datetime
    end: datetime
    step: timedelta
    remaining_at_start: float
    steps: list[HistoryStep]


def history_bin(at: datetime, step: timedelta) -> datetime:
    """The start of the history step holding `at`."""
    return HISTORY_ORIGIN + ((at - HISTORY_ORIGIN) // step) * step


def history(slo: SLO, state: Status, *, start: datetime, end: datetime, step: timedelta) -> History:
    """The SLI and the budget left, step by step over [start, end), in one query.

    Clipped to the status's window and its first counted minute, so a chart
    starts where the counts do. Steps are on HISTORY_ORIGIN's grid; the first
    one is cut at `start`, the last at `end` (callers pass the end of the last
    complete step). The budget left is against the status's budget, so it reads
    as the tiles do; the units spent in the window before `start` are read in
    the same statement. Hourly steps of an occurrences SLO sum slo_slohour.
    """
    start = minute_floor(max(start, state.window_start, state.counted_since or end))
    end = max(start, minute_floor(min(end, state.window_end)))
    hourly = slo.budgeting == Budgeting.OCCURRENCES and step % HOUR == timedelta(0)
    before, buckets = _history_buckets(slo, state.window_start, start, end, step, hourly=hourly)
    consumed = before
    remaining_at_start = maths.budget_remaining_pct(consumed, state.budget_total)
    steps = []
    bucket = history_bin(start, step)
    while bucket < end:
        bad, units, events = buckets.get(bucket, (0, 0, 0))
        consumed += bad
        steps.append(
            HistoryStep(
                start=max(bucket, start), end=min(bucket + step, end), bad=bad, units=units,
                events=events,
                remaining_pct=maths.budget_remaining_pct(consumed, state.budget_total),
            )
        )  # fmt: skip
        bucket += step
    return History(start, end, step, remaining_at_start, steps)


def _segments(start: datetime, end: datetime, *, hourly: bool) -> list[tuple]:
    """Where [start, end) is read: whole hours from slo_slohour, the rest from minutes."""
    if not hourly:
        return [("minute", start, end)]
    first, last = _whole_hours(start, end)
    return [("minute", start, first), ("hour", first, last), ("minute", last, end)]


_HISTORY_TABLES = {"minute": "slo_slominute", "hour": "slo_slohour"}


def _history_buckets(slo: SLO, window_start, start, end, step, *, hourly: bool):
    """Bad units in [window_start, start), and (bad, units, events) per step of [start, end)."""
    minute_bad, minute_units, unit_params = _unit_sql(slo)
    values = {"minute": (f"{minute_bad}, {minute_units}, total", unit_params),
              "hour": ("total - good, total, total", [])}  # fmt: skip
    parts, params = [], []
    for before, low, high in (True, window_start, start), (False, start, end):
        for column, segment_low, segment_high in _segments(low, high, hourly=hourly):
            if segment_low >= segment_high:
                continue
            # The units before the range share one NULL bin: the burndown's starting point.
            bin_sql = "NULL::timestamptz" if before else f"date_bin(%s, {column}, %s)"
            unit_sql, unit_sql_params = values[column]
            parts.append(
                f"SELECT {bin_sql}, {unit_sql} FROM {_HISTORY_TABLES[column]} "
                f"WHERE slo_id = %s AND {column} >= %s AND {column} < %s"
            )
            params += [*([] if before else [step, HISTORY_ORIGIN]), *unit_sql_params,
                       slo.pk, segment_low, segment_high]  # fmt: skip
    if not parts:
        return 0, {}
    sql = (
        "SELECT bin, sum(bad), sum(units), sum(events) "
        f"FROM ({' UNION ALL '.join(parts)}) AS m (bin, bad, units, events) GROUP BY bin"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    before = next((int(row[1]) for row in rows if row[0] is None), 0)
    return before, {row[0]: tuple(int(v) for v in row[1:]) for row in rows if row[0] is not None}


@dataclass(frozen=True)
class BudgetUse:
    """What one version spent of an SLO's budget since `since`, from the status's counts."""

    slo: SLO
    status: Status
    bad: int

    @property
    def consumed_pct(self) -> float | None:
        """At most the window's consumed share: the version's bad are part of the window's."""
        if not self.status.budget_total:
            return None
        return 100 * self.bad / self.status.budget_total


def version_budget_use(service: str, version: str, since: datetime, *, now: datetime):
    """For each SLO of the service, the bad units a version caused since `since`.

    The bad units since `since` are read from the same per-minute counts as the
    status; raw spans only give the version's share of them (timeslice minutes
    belong to no version, so a timeslice SLO is charged every bad minute since).
    """
    slos = list(SLO.objects.for_service(service))
    found = statuses(slos, now=now)
    uses = []
    for slo in slos:
        start = max(since, found[slo.pk].window_start)
        bad_since = _bad_units_between(slo, start, found[slo.pk].window_end)
        if slo.budgeting == Budgeting.OCCURRENCES and bad_since:
            bad_since = round(bad_since * _version_share(slo, version, start, now))
        uses.append(BudgetUse(slo=slo, status=found[slo.pk], bad=bad_since))
    return uses


def _bad_units_between(slo: SLO, start: datetime, end: datetime) -> int:
    bad, _, unit_params = _unit_sql(slo)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT coalesce(sum({bad}), 0) FROM slo_slominute "
            "WHERE slo_id = %s AND minute >= %s AND minute < %s",
            [*unit_params, slo.pk, start, end],
        )
        return int(cursor.fetchone()[0])


def bad_units_in(slo: SLO, intervals: list[tuple[datetime, datetime]]) -> list[int]:
    """The SLO's bad units in each [start, end), in one query (a deploy's share of the burn).

    Under occurrences, whole hours are read from slo_slohour, as the status does.
    """
    if not intervals:
        return []
    minute_bad, _, unit_params = _unit_sql(slo)
    bad_sql = {"minute": (minute_bad, unit_params), "hour": ("total - good", [])}
    hourly = slo.budgeting == Budgeting.OCCURRENCES
    parts, params = [], []
    for index, (start, end) in enumerate(intervals):
        # Whole minutes, so back-to-back intervals share out each minute exactly once.
        start, end = minute_floor(start), minute_floor(end)
        for column, low, high in _segments(start, end, hourly=hourly):
            if low >= high:
                continue
            bad, bad_params = bad_sql[column]
            parts.append(
                f"SELECT %s::int, {bad} FROM {_HISTORY_TABLES[column]} "
                f"WHERE slo_id = %s AND {column} >= %s AND {column} < %s"
            )
            params += [index, *bad_params, slo.pk, low, high]
    found = [0] * len(intervals)
    if parts:
        with transaction.atomic(), connection.cursor() as cursor:
            # Dozens of tiny index ranges: launching parallel workers costs more than
            # the reads (16 of 19 ms on a busy machine).
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cursor.execute(
                f"SELECT i, sum(bad) FROM ({' UNION ALL '.join(parts)}) AS m (i, bad) GROUP BY i",
                params,
            )
            for index, bad in cursor.fetchall():
                found[index] = int(bad)
    return found


def _version_share(slo: SLO, version: str, start: datetime, end: datetime) -> float:
    """The share of the selection's bad spans in [start, end) that this version served."""
    selection, rule = slo.span_selection, slo.good_rule
    every = spans.bad_count(selection, rule, start=start, end=end)
    if not every:
        return 0.0
    mine = spans.bad_count(selection, rule, start=start, end=end, version=version)
    return min(1.0, mine / every)


def minute_series(slo: SLO, start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
    """(minute, bad units, total events) per counted minute of [start, end), in order.

    Bad units are the SLO's own: bad events, or 1 for a bad timeslice minute.
    """
    rows = (
        SLOMinute.objects.filter(slo=slo, minute__gte=start, minute__lt=end)
        .order_by("minute")
        .values_list("minute", "good", "total")
    )
    if slo.budgeting == Budgeting.TIMESLICES:
        target = slo.timeslice_target / 100
        return [(minute, int(good < target * total), total) for minute, good, total in rows]
    return [(minute, total - good, total) for minute, good, total in rows]
