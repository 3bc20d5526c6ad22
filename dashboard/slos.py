"""SLO rows, banners and the SLO page, from slo's statuses.

Every figure of an SLO (SLI, budget used and left, burn rates, tiers, the
burndown and the SLI series) comes from one slo.status reading, so they agree
with each other and with every other page that shows the same SLO.
"""

from datetime import datetime, timedelta

from django.core.cache import cache
from django.urls import reverse

from dashboard import causes, figures
from slo import maths
from slo import status as slo_status
from slo.models import SLO, Severity
from telemetry.demo import is_demo

STATUS_CACHE_SECONDS = 60


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def _level(state: slo_status.Status) -> str:
    worst = state.worst_firing_tier
    if state.learning:
        return "warn" if worst else "info"
    if (worst and worst.severity == Severity.PAGE) or state.budget_remaining_pct <= 0:
        return "bad"
    if worst or state.budget_remaining_pct < 25:
        return "warn"
    return "ok"


def _tier_text(tier) -> str:
    burn = f"{tier.long_burn_rate:.1f}× over {tier.windows} now (threshold {tier.threshold:.1f}×)"
    calm_since = tier.alert.calm_since if tier.alert else None
    if calm_since is not None:
        # slo/evaluation.py keeps an alert open for a few calm minutes, so a burn
        # hovering at the threshold pages once; say so rather than "burning" under it.
        return f"{tier.severity} alert calming since {calm_since:%H:%M} UTC: {burn}"
    return f"{tier.severity} alert: burning {burn}"


def slo_row(slo: SLO, state: slo_status.Status, cause: dict | None = None) -> dict:
    worst = state.worst_firing_tier
    return {
        "id": slo.pk,
        "name": slo.display_name or slo.name,
        "service": slo.service,
        "route": slo.route,
        "url": reverse("dashboard:slo", args=[slo.pk]),
        "service_url": reverse("dashboard:service", args=[slo.service]),
        "objective": float(slo.objective),
        "window": slo.window,
        "sli_pct": None if state.sli is None else round(100 * state.sli, 4),
        "good": state.good,
        "total": state.total,
        "unit": state.unit,
        "budget_total": round(state.budget_total, 3),
        "budget_consumed": state.budget_consumed,
        # Rounded once, here, to what every page shows: Python's banners and the
        # scripts' tables then print the same digits.
        "budget_remaining_pct": round(state.budget_remaining_pct, 1),
        "budget_used_pct": round(100 - round(state.budget_remaining_pct, 1), 1),
        "budget_projected": state.budget_projected,
        "learning": state.learning,
        "burn_rates": {key: round(value, 3) for key, value in state.burn_rates.items()},
        "time_to_exhaustion_s": _seconds(state.time_to_exhaustion),
        "alert": None
        if worst is None
        else {
            "severity": worst.severity,
            "windows": worst.windows,
            "burn_rate": round(worst.long_burn_rate, 3),
            "threshold": round(worst.threshold, 3),
            "text": _tier_text(worst),
            "fired_at": worst.alert.fired_at.isoformat(),
        },
        "cause": cause,
        "level": _level(state),
    }


def slo_rows(*, now: datetime, service: str | None = None) -> list[dict]:
    """Every SLO (of one service, if given) with its status, fastest burn first."""
    slos = list(SLO.objects.all() if service is None else SLO.objects.for_service(service))
    states = _statuses(slos, now=now)
    firing = {
        slo.pk: states[slo.pk].worst_firing_tier.alert.pk
        for slo in slos
        if states[slo.pk].worst_firing_tier
    }
    found = causes.of_alerts(list(firing.values()))
    rows = [slo_row(slo, states[slo.pk], found.get(firing.get(slo.pk))) for slo in slos]
    rows.sort(key=burn_order)
    return rows


def _statuses(slos: list[SLO], *, now: datetime) -> dict[int, slo_status.Status]:
    """Each SLO's status, read at most once a minute per SLO.

    The counts behind a status change once a minute, when the rollup lands,
    so the pages that list every SLO (overview, budgets, a service) share this
    minute's reading and show the same figures; the SLOs not cached yet are
    read together, in slo's one reading for many.
    """
    minute = now.replace(second=0, microsecond=0).isoformat()
    keys = {
        slo.pk: f"dashboard:slo-status:{slo.pk}:{slo.updated_at.isoformat()}:{minute}"
        for slo in slos
    }
    cached = cache.get_many(list(keys.values()))
    states = {pk: cached[key] for pk, key in keys.items() if key in cached}
    fresh = slo_status.statuses([slo for slo in slos if slo.pk not in states], now=now)
    cache.set_many({keys[pk]: state for pk, state in fresh.items()}, STATUS_CACHE_SECONDS)
    return {**states, **fresh}


def burn_order(row: dict) -> tuple:
    """Fastest burn first: the 1h burn rate, then 6h and 1d, then the least budget left."""
    rates = row["burn_rates"]
    return (
        -rates.get("1h", 0),
        -rates.get("6h", 0),
        -rates.get("1d", 0),
        row["budget_remaining_pct"],
        row["name"],
    )


def _labelled(service: str) -> str:
    return f"{service} (demo)" if is_demo(service) else service


def banners(rows: list[dict]) -> list[dict]:
    """One banner per SLO with a firing alert: its worst tier and the burn rate now."""
    found = []
    for row in rows:
        alert = row["alert"]
        if alert is None:
            continue
        found.append(
            {
                "level": "bad" if alert["severity"] == Severity.PAGE else "warn",
                "text": f"{_labelled(row['service'])} · SLO {row['name']}: {alert['text']}, "
                f"{row['budget_remaining_pct']:.1f}% of the budget left.",
                "at": alert["fired_at"],
                "at_label": "since",
                "url": row["url"],
                "link_text": "Open the SLO",
            }
        )
    return sorted(found, key=lambda banner: (banner["level"] != "bad", banner["text"]))


def chart_ranges(slo: SLO, *, now: datetime) -> dict[str, timedelta]:
    return figures.slo_chart_ranges(slo.window, slo.window_spec.period(now))


def slo_detail(
    slo: SLO, *, now: datetime, chart_range: str | None = None
) -> tuple[slo_status.Status, dict]:
    """The SLO page's figures: this minute's status (as on every page), tiers, and its charts.

    The charts cover `chart_range` (by default the shortest range holding
    every counted minute), from the first counted minute, in steps that fit the
    time shown and complete steps only (slo.status.history).
    """
    state = _statuses([slo], now=now)[slo.pk]
    worst = state.worst_firing_tier
    cause = causes.of_alerts([worst.alert.pk]).get(worst.alert.pk) if worst else None
    ranges = chart_ranges(slo, now=now)
    counted_for = None
    if state.counted_since:
        counted_for = now - max(state.counted_since, state.window_start)
    if chart_range not in ranges:
        chart_range = figures.fitting_slo_range(ranges, counted_for)
    detail = {
        **slo_row(slo, state, cause),
        "window_start": state.window_start.isoformat(),
        "window_end": state.window_end.isoformat(),
        "counted_since": state.counted_since.isoformat() if state.counted_since else None,
        "tiers": [_tier_row(tier) for tier in state.tiers],
        "burn_table": [
            {"window": key, "burn_rate": round(state.burn_rates[key], 3)}
            for key in maths.STATUS_BURN_WINDOWS
        ],
        "chart_range": chart_range,
        "chart_ranges": list(ranges),
        **_charts(slo, state, ranges[chart_range], now=now),
    }
    return state, detail


def _charts(slo: SLO, state: slo_status.Status, span: timedelta, *, now: datetime) -> dict:
    """The SLI of each complete step with traffic, and the budget left at each step's end."""
    start, end, step = figures.slo_chart_bounds(
        span, window_start=state.window_start, counted_since=state.counted_since,
        now=now, step_for=maths.history_step,
    )  # fmt: skip
    found = slo_status.history(slo, state, start=start, end=end, step=step)
    burndown = [{"at": found.start, "remaining_pct": found.remaining_at_start}] + [
        {"at": point.end, "remaining_pct": point.remaining_pct} for point in found.steps
    ]
    burndown = [
        {"at": point["at"].isoformat(), "remaining_pct": round(point["remaining_pct"], 3)}
        for point in burndown
    ]
    return {
        "chart_start": found.start.isoformat(),
        "chart_end": found.end.isoformat(),
        "chart_step_s": int(step.total_seconds()),
        # Drawn at the end of its step, where the burndown shows what it spent.
        "sli_series": [
            {"t": point.end.isoformat(), "sli_pct": round(100 * point.sli, 4),
             "good": point.units - point.bad, "total": point.units}
            for point in found.steps
            if point.units
        ],  # fmt: skip
        "history": burndown if found.steps else [],
    }


def deploy_budget_use(slo: SLO, state: slo_status.Status, deploys: list, *, now: datetime):
    """Each deploy's share of the budget: what the SLO spent while it was the latest one."""
    intervals = [
        (max(deploy.started_at, state.window_start),
         deploys[index + 1].started_at if index + 1 < len(deploys) else now)
        for index, deploy in enumerate(deploys)
    ]  # fmt: skip
    spent = slo_status.bad_units_in(slo, intervals)
    if not state.budget_total:
        return [None for _ in deploys]
    return [round(100 * bad / state.budget_total, 3) for bad in spent]


def _tier_row(tier) -> dict:
    return {
        "severity": tier.severity,
        "windows": tier.windows,
        "threshold": round(tier.threshold, 3),
        "long_burn_rate": round(tier.long_burn_rate, 3),
        "short_burn_rate": round(tier.short_burn_rate, 3),
        "firing": tier.firing,
        "fired_at": tier.alert.fired_at.isoformat() if tier.alert else None,
    }


def alert_history(slo: SLO) -> list[dict]:
    return [
        {
            "severity": alert.severity,
            "windows": alert.windows,
            "threshold": round(alert.threshold, 3),
            "long_burn_rate": round(alert.long_burn_rate, 3),
            "short_burn_rate": round(alert.short_burn_rate, 3),
            "budget_consumed_pct": round(alert.budget_consumed_pct, 3),
            "fired_at": alert.fired_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        }
        for alert in slo.alerts.all()[:50]
    ]
