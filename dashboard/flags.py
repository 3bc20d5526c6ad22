"""Flags for the dashboard: the flags list, one flag's page and flag changes as markers.

Reads only what the apps below export: flag changes, their verdict records and
findings (flags.models), the budget each cohort spent (flags.impact), and the
flag evaluations through telemetry.flag_store's cohort reads. Charts follow
dashboard.figures: complete buckets only, starting where the data starts.
"""

from datetime import datetime, timedelta

from django.urls import reverse

from dashboard import figures
from dashboard.deploys import finding_row, flag_url, share_pcts
from dashboard.deploys import flag_change_row as change_row
from dashboard.figures import TimeRange
from deployments.models import Deployment, Verdict
from flags import impact
from flags.models import FlagChange
from flags.shares import shares as share_of
from telemetry import flag_store
from telemetry.demo import is_demo
from telemetry.flag_store import CohortFilter
from telemetry.otlp import hex_id

# "Current shares" are those of the last few minutes, as GET /api/v1/flags says.
CURRENT_WINDOW = timedelta(minutes=15)
FLAG_LIST_LIMIT = 500
CHANGES_SHOWN = 50
EXAMPLE_TRACES = 3
FLAG_RANGES = {name: figures.RANGES[name] for name in ("15m", "1h", "6h", "24h")}
# Failing rollouts first, then the undecided, then the settled, then flags never changed.
URGENCY = {Verdict.FAIL: 0, Verdict.INCONCLUSIVE: 1, Verdict.PENDING: 2,
           Verdict.RECOVERED: 3, Verdict.PASS: 4}  # fmt: skip
NEVER_CHANGED = 5


# The Flags page


def flag_rows(*, now: datetime) -> list[dict]:
    """Every flag evaluated lately or ever changed: failing rollouts first."""
    seen = {f.flag: f for f in flag_store.flags_seen(now - CURRENT_WINDOW, now)}
    latest = {}
    rows = FlagChange.objects.order_by("flag", "-at", "-id").distinct("flag")
    for change in rows[:FLAG_LIST_LIMIT]:
        latest[change.flag] = change
    flags = [_flag_row(flag, seen.get(flag), latest.get(flag)) for flag in set(seen) | set(latest)]
    flags.sort(key=lambda row: (row["urgency"], _newest_first(row), row["flag"]))
    return flags


def _newest_first(row: dict) -> float:
    change = row["last_change"]
    return -datetime.fromisoformat(change["at"]).timestamp() if change else 0.0


def _flag_row(flag: str, seen, change: FlagChange | None) -> dict:
    counts = seen.cohorts if seen else {}
    services = list(seen.services) if seen else list(change.services if change else [])
    return {
        "flag": flag,
        "url": flag_url(flag),
        "services": [{"name": name, "demo": is_demo(name),
                      "url": reverse("dashboard:service", args=[name])} for name in services],
        "variants": sorted(counts),
        "shares": share_pcts(share_of(counts)),
        "evaluations": sum(counts.values()),
        "last_evaluated_at": seen.last_at.isoformat() if seen else None,
        "last_change": change_row(change) if change else None,
        "verdict": change.verdict if change else None,
        "urgency": URGENCY.get(change.verdict, NEVER_CHANGED) if change else NEVER_CHANGED,
    }  # fmt: skip


def flags_page(*, now: datetime) -> dict:
    return {"generated_at": now.isoformat(), "window_minutes": CURRENT_WINDOW.seconds // 60,
            "flags": flag_rows(now=now)}  # fmt: skip


# Markers on other pages' charts


def changes_for_service(service: str, start: datetime, end: datetime) -> list[dict]:
    """Flag changes that name the service, in [start, end), oldest first."""
    rows = FlagChange.objects.filter(services__contains=[service], at__gte=start, at__lt=end)
    return [change_row(change) for change in rows.order_by("at", "id")]


# One flag's page


def default_range(flag: str, *, now: datetime) -> str:
    """The shortest range that holds the flag's latest change, up to a day; else an hour."""
    latest = FlagChange.objects.latest_for(flag)
    if latest is None:
        return "1h"
    return figures.fitting_range(now - latest.at, choices=FLAG_RANGES, longest="24h")


def known_flag(flag: str, *, now: datetime) -> bool:
    return (
        FlagChange.objects.filter(flag=flag).exists()
        or flag_store.flag_evaluated(flag, since=now - timedelta(days=30))
    )


def flag_services(flag: str, start: datetime, end: datetime, changes: list[FlagChange]) -> list:
    named = {service for change in changes for service in change.services}
    return sorted(named | set(flag_store.services_of_flag(flag, start, end)))


def flag_page(
    flag: str, time_range: TimeRange, *, now: datetime, service: str = "",
    change_id: int | None = None,
) -> dict:  # fmt: skip
    """Shares over time, each cohort's traffic, the chosen change's verdict, findings and budget."""
    start, end = time_range.bounds(now)
    changes = list(FlagChange.objects.for_flag(flag)[:CHANGES_SHOWN])
    chosen = next((c for c in changes if c.pk == change_id), changes[0] if changes else None)
    services = flag_services(flag, start, end, changes)
    if service not in services:
        # The chosen change's first service, else the first that evaluates the flag.
        named = [name for name in (chosen.services if chosen else []) if name in services]
        service = (named or services or [""])[0]
    in_range = [c for c in changes if start <= c.at < end]
    deploys = Deployment.objects.filter(service=service, started_at__gte=start, started_at__lt=end)
    return {
        "generated_at": now.isoformat(),
        "flag": flag,
        "range": time_range.name,
        "service": service,
        "services": [{"name": name, "demo": is_demo(name)} for name in services],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "shares": share_series(flag, start, end, time_range.step),
        "cohorts": cohort_series(flag, service, start, end, time_range.step) if service else [],
        "changes": [change_row(change) for change in changes],
        "markers": [change_row(change) for change in reversed(in_range)],
        "deploys": [_deploy_marker(d) for d in deploys.order_by("started_at", "id")],
        "change": change_detail(chosen, now=now) if chosen else None,
    }


def _deploy_marker(deploy: Deployment) -> dict:
    return {"kind": "deploy", "url": reverse("dashboard:deploy", args=[deploy.pk]),
            "version": deploy.version, "at": deploy.deployed_at.isoformat(),
            "verdict": deploy.verdict}  # fmt: skip


def _steps(start: datetime, end: datetime, step: timedelta):
    bucket = start
    while bucket < end:
        yield bucket
        bucket += step


def _by_step(by_minute: dict[datetime, object], step: timedelta) -> dict[datetime, list]:
    grouped: dict[datetime, list] = {}
    for minute, value in by_minute.items():
        grouped.setdefault(figures.floor(minute, step), []).append(value)
    return grouped


def share_series(flag: str, start: datetime, end: datetime, step: timedelta) -> dict:
    """Each cohort's share (%) of the flag's evaluations per step; steps without any are None."""
    grouped = _by_step(flag_store.cohort_minute_counts(flag, start, end), step)
    cohorts = sorted({cohort for minutes in grouped.values() for counts in minutes
                      for cohort in counts})  # fmt: skip
    points = []
    for bucket in _steps(start, end, step):
        totals = {cohort: 0 for cohort in cohorts}
        for counts in grouped.get(bucket, []):
            for cohort, count in counts.items():
                totals[cohort] += count
        every = sum(totals.values())
        shares = {cohort: figures.pct(count, every) for cohort, count in totals.items()}
        points.append({"t": bucket.isoformat(), "evaluations": every, "shares": shares})
    first = min(grouped, default=start)
    return {"cohorts": cohorts, "data_start": max(first, start).isoformat(), "points": points}


def cohort_series(flag: str, service: str, start: datetime, end: datetime, step) -> list[dict]:
    """Per cohort of the service: request rate, error rate and p50/p95/p99 latency per step."""
    series = []
    for cohort in sorted(flag_store.cohort_counts(flag, start, end, services=(service,))):
        requests = CohortFilter(flag=flag, service=service, start=start, end=end, cohort=cohort)
        by_minute = flag_store.cohort_request_minute_counts(requests)
        counts = _by_step(by_minute, step)
        latency = flag_store.cohort_latency_per_step(requests, step=step, origin=figures.ORIGIN)
        # A cohort is rated over the time it existed, as a service is over the time it
        # served: the step its flag change falls in does not read low.
        existed = [_minutes_spanned(by_minute)] if by_minute else []
        points = []
        for bucket in _steps(start, end, step):
            total = sum(n for n, _ in counts.get(bucket, []))
            errors = sum(e for _, e in counts.get(bucket, []))
            p50, p95, p99 = latency.get(bucket, (None, None, None))
            seconds = figures.served_seconds(existed, bucket, min(bucket + step, end))
            points.append({
                "t": bucket.isoformat(),
                "rate": figures.rate(total, seconds),
                "error_pct": figures.pct(errors, total),
                "p50_ms": _round(p50), "p95_ms": _round(p95), "p99_ms": _round(p99),
            })  # fmt: skip
        series.append({"cohort": cohort, "points": points})
    return series


def _minutes_spanned(by_minute: dict[datetime, object]) -> tuple[datetime, datetime]:
    """From the first minute with requests to the end of the last one."""
    return min(by_minute), max(by_minute) + timedelta(minutes=1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# One change: verdict, findings, new errors and budget


def change_detail(change: FlagChange, *, now: datetime) -> dict:
    records = list(change.verdict_records.all())
    latest = records[-1] if records else None
    findings = list(latest.findings.all()) if latest else []
    return {
        **change_row(change),
        "control_reason": change.control_reason,
        "detected_at": change.detected_at.isoformat() if change.detected_at else None,
        "minute": latest.minute if latest else None,
        "history": [
            {"minute": r.minute, "verdict": r.verdict, "reason": r.reason, "control": r.control,
             "created_at": r.created_at.isoformat()}
            for r in records
        ],  # fmt: skip
        "findings": [
            {**finding_row(f), "service": f.service, "variant": f.variant}
            for f in findings
            if f.metric != "new_error_type"
        ],
        "new_errors": new_errors(change, now),
        "budget_impact": _budget_rows(change, now=now),
    }


def new_errors(change: FlagChange, end: datetime) -> list[dict]:
    """Error types each variant's requests hit since the change that the control's never did."""
    rows = []
    for service in change.services:
        def cohort_filter(cohort: str, service=service) -> CohortFilter:
            return CohortFilter(flag=change.flag, service=service, start=change.at, end=end,
                                cohort=cohort)  # fmt: skip

        control = {kind for _, kind in flag_store.cohort_error_type_counts(
            cohort_filter(change.control))}  # fmt: skip
        cohorts = flag_store.cohort_counts(change.flag, change.at, end, services=(service,))
        for variant in sorted(set(cohorts) - {change.control}):
            per_type: dict[str, int] = {}
            for (_, kind), count in flag_store.cohort_error_type_counts(
                cohort_filter(variant)
            ).items():
                if kind not in control:
                    per_type[kind] = per_type.get(kind, 0) + count
            for kind, count in sorted(per_type.items(), key=lambda item: -item[1]):
                traces = flag_store.cohort_example_traces(
                    change.flag, service, variant, kind, change.at, end, limit=EXAMPLE_TRACES
                )
                rows.append({"service": service, "variant": variant, "error_type": kind,
                             "count": count, "traces": [hex_id(t) for t in traces]})  # fmt: skip
    return rows


def _budget_rows(change: FlagChange, *, now: datetime) -> list[dict]:
    """flags.impact's rows, rounded as the SLO pages round budgets."""
    rows = impact.budget_impact(change, now=now)
    for row in rows:
        for key in ("budget_consumed_pct", "budget_remaining_pct", "window_consumed_pct"):
            if row.get(key) is not None:
                row[key] = round(row[key], 1)
        row["slo_url"] = reverse("dashboard:slo", args=[row["slo_id"]])
    return rows
