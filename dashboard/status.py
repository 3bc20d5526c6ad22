"""What each page shows, gathered from telemetry, SLOs and deploys.

The dashboard sits downstream of all three apps and only reads from them.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.core.cache import cache
from django.urls import reverse

from dashboard import queries
from deployments import route_watch, slo_link
from deployments.models import Deployment, Finding, RouteShift, Verdict
from slo import maths
from slo import status as slo_status
from slo.models import SLO, Alert, Severity


def overview(*, now: datetime) -> dict:
    """Every service with its last hour, SLO status and latest deploy, most urgent first."""
    stats = queries.overview_stats(now=now)
    slos = slo_rows(now=now)
    latest_deploys = _latest_deploys()
    names = sorted(set(queries.known_services(now=now)) | set(stats) | set(latest_deploys))
    slos_by_service = defaultdict(list)
    for slo in slos:
        slos_by_service[slo["service"]].append(slo)
    rows = []
    for name in names:
        deploy = latest_deploys.get(name)
        row = {
            "service": name,
            "url": reverse("dashboard:service", args=[name]),
            **(stats.get(name) or queries.empty_overview(now=now)),
            "slo": _worst_slo(slos_by_service[name]),
            "deploy": _deploy_row(deploy) if deploy else None,
        }
        row["urgency"] = _urgency(row, slos_by_service[name])
        rows.append(row)
    rows.sort(key=lambda row: (-row["urgency"], -row["rate"], row["service"]))
    return {
        "generated_at": now.isoformat(),
        "banners": _alert_banners(slos)
        + _deploy_banners(latest_deploys.values())
        + _shift_banners(),
        "services": rows,
    }


def _latest_deploys() -> dict[str, Deployment]:
    latest = Deployment.objects.order_by("service", "-started_at", "-id").distinct("service")
    return {deploy.service: deploy for deploy in latest}


def _worst_slo(slos: list[dict]) -> dict | None:
    if not slos:
        return None
    worst = min(slos, key=lambda slo: (_LEVEL_ORDER[slo["level"]], slo["budget_remaining_pct"]))
    names = ", ".join(f"{slo['name']}: {slo['budget_remaining_pct']:.1f}% left" for slo in slos)
    return {
        "budget_remaining_pct": worst["budget_remaining_pct"],
        "level": worst["level"],
        "url": worst["url"],
        "title": names,
        "count": len(slos),
    }


_LEVEL_ORDER = {"bad": 0, "warn": 1, "ok": 2}


def _urgency(row: dict, slos: list[dict]) -> float:
    """A score to sort by: firing pages, then failing deploys, then burning budgets."""
    severities = {alert["severity"] for slo in slos for alert in slo["alerts"]}
    score = 0.0
    if Severity.PAGE in severities:
        score += 1000
    if row["deploy"] and row["deploy"]["verdict"] == Verdict.FAIL:
        score += 800
    if Severity.TICKET in severities:
        score += 400
    if slos:
        lowest = min(slo["budget_remaining_pct"] for slo in slos)
        score += 200 if lowest <= 0 else 100 if lowest < 25 else 0
    return score + min(row["error_pct"] or 0.0, 100.0)


def _alert_banners(slos: list[dict]) -> list[dict]:
    return [
        {
            "level": "bad" if alert["severity"] == Severity.PAGE else "warn",
            "text": f"{slo['service']} · SLO {slo['name']}: {alert['text']}, "
            f"{slo['budget_remaining_pct']:.1f}% of the budget left.",
            "at": alert["fired_at"],
            "at_label": "since",
            "url": slo["url"],
            "link_text": "Open the SLO",
        }
        for slo in slos
        for alert in slo["alerts"]
    ]


def _deploy_banners(latest_deploys) -> list[dict]:
    return [
        {
            "level": "bad",
            "text": f"Deploy of {deploy.service} {deploy.version} failed its analysis: "
            f"{deploy.verdict_reason}",
            "at": deploy.deployed_at.isoformat(),
            "at_label": "deployed",
            "url": reverse("dashboard:deploy", args=[deploy.pk]),
            "link_text": "Open the deploy",
        }
        for deploy in sorted(latest_deploys, key=lambda deploy: deploy.service)
        if deploy.verdict == Verdict.FAIL
    ]


def _shift_banners() -> list[dict]:
    return [
        {
            "level": "warn",
            "text": route_watch.describe(shift) + ".",
            "at": shift.detected_at.isoformat(),
            "at_label": "since",
            "url": reverse("dashboard:service", args=[shift.service]),
            "link_text": "Open the service",
        }
        for shift in RouteShift.objects.open().order_by("service", "route", "metric")
    ]


def service_page(service: str, time_range: queries.TimeRange, *, now: datetime) -> dict:
    breakdown = queries.service_breakdown(service, time_range, now=now)
    start, end = time_range.bounds(now)
    service_deploys = Deployment.objects.filter(service=service)
    versions = [row["version"] for row in breakdown["versions"]]
    by_version = {
        deploy.version: _deploy_row(deploy)
        for deploy in service_deploys.filter(version__in=versions).order_by("started_at", "id")
    }
    for version in breakdown["versions"]:
        version["deploy"] = by_version.get(version["version"])
    in_range = service_deploys.filter(started_at__gte=start, started_at__lt=end)
    return {
        "generated_at": now.isoformat(),
        "service": service,
        "range": time_range.name,
        **breakdown,
        "slos": slo_rows(now=now, service=service),
        "deploys": [_deploy_row(deploy) for deploy in in_range.order_by("started_at", "id")],
    }


# SLOs


def _slo_level(remaining_pct: float, alerts: list) -> str:
    if any(alert.severity == Severity.PAGE for alert in alerts) or remaining_pct <= 0:
        return "bad"
    if alerts or remaining_pct < 25:
        return "warn"
    return "ok"


def _open_alerts() -> dict[int, list[Alert]]:
    open_by_slo: dict[int, list[Alert]] = defaultdict(list)
    for alert in Alert.objects.filter(resolved_at__isnull=True).order_by("fired_at"):
        open_by_slo[alert.slo_id].append(alert)
    return open_by_slo


def _alert_text(alert: Alert) -> str:
    return f"{alert.severity} alert: burning {alert.long_burn_rate:.1f}× over {alert.windows}"


def _slo_row(slo: SLO, state: slo_status.Status, alerts: list[Alert]) -> dict:
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
        "total": state.total,
        "unit": state.unit,
        "budget_remaining_pct": round(state.budget_remaining_pct, 2),
        "burn_rates": {key: round(value, 3) for key, value in state.burn_rates.items()},
        "time_to_exhaustion_s": _seconds(state.time_to_exhaustion),
        "alerts": [
            {
                "severity": alert.severity,
                "text": _alert_text(alert),
                "fired_at": alert.fired_at.isoformat(),
            }
            for alert in alerts
        ],
        "alert": _alert_text(alerts[0]) if alerts else "",
        "level": _slo_level(state.budget_remaining_pct, alerts),
    }


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def slo_rows(*, now: datetime, service: str | None = None) -> list[dict]:
    """Every SLO (of one service, if given) with its status, fast burn first."""
    slos = list(SLO.objects.all() if service is None else SLO.objects.filter(service=service))
    open_alerts = _open_alerts()
    states = _statuses(slos, now=now)
    rows = [_slo_row(slo, states[slo.pk], open_alerts[slo.pk]) for slo in slos]
    rows.sort(key=_burn_order)
    return rows


STATUS_CACHE_SECONDS = 60


def _statuses(slos: list[SLO], *, now: datetime) -> dict[int, slo_status.Status]:
    """Each SLO's status, computed at most once a minute per process.

    The counts behind a status change once a minute, when the rollup lands,
    so pages that list every SLO reuse this minute's answer.
    """
    minute = now.replace(second=0, microsecond=0).isoformat()
    keys = {slo.pk: f"dashboard:slo-status:{slo.pk}:{slo.updated_at.isoformat()}:{minute}"
            for slo in slos}  # fmt: skip
    cached = cache.get_many(list(keys.values()))
    states = {pk: cached[key] for pk, key in keys.items() if key in cached}
    fresh = {
        slo.pk: slo_status.status(slo, now=now, history=False)
        for slo in slos
        if slo.pk not in states
    }
    cache.set_many({keys[pk]: state for pk, state in fresh.items()}, STATUS_CACHE_SECONDS)
    return {**states, **fresh}


def _burn_order(row: dict) -> tuple:
    severities = {alert["severity"] for alert in row["alerts"]}
    return (
        0 if Severity.PAGE in severities else 1 if severities else 2,
        -row["burn_rates"].get("1h", 0),
        -row["burn_rates"].get("1d", 0),
        row["budget_remaining_pct"],
        row["name"],
    )


def budgets(*, now: datetime) -> dict:
    return {"generated_at": now.isoformat(), "slos": slo_rows(now=now)}


def slo_page(slo: SLO, *, now: datetime) -> dict:
    """Status, SLI and burndown series, burn rates per window, alerts and deploys."""
    state = slo_status.status(slo, now=now, history=True)
    row = _slo_row(slo, state, list(slo.alerts.filter(resolved_at__isnull=True)))
    period = slo.window_spec.period(now)
    # A window can be one tier's short window and another's long one; the long wins.
    tiers = {tier.short: tier for tier in maths.alert_windows(period)}
    tiers.update({tier.long: tier for tier in maths.alert_windows(period)})
    burn_table = [
        {
            "window": key,
            "burn_rate": round(state.burn_rates[key], 3),
            "threshold": round(tiers[duration].burn_rate, 3) if duration in tiers else None,
            "severity": tiers[duration].severity if duration in tiers else "",
        }
        for key, duration in maths.STATUS_BURN_WINDOWS.items()
    ]
    history = [
        {"at": point["at"].isoformat(), "remaining_pct": round(point["remaining_pct"], 3)}
        for point in state.budget_history
    ]
    deploys = Deployment.objects.filter(
        service=slo.service, started_at__gte=state.window_start, started_at__lt=state.window_end
    ).order_by("started_at")
    return {
        "generated_at": now.isoformat(),
        **row,
        "good": state.good,
        "budget_total": round(state.budget_total, 3),
        "budget_consumed": state.budget_consumed,
        "window_start": state.window_start.isoformat(),
        "window_end": state.window_end.isoformat(),
        "burn_table": burn_table,
        "history": history,
        "sli_series": queries.slo_sli_series(slo.pk, state.window_start, state.window_end),
        "alert_history": [_alert_history_row(alert) for alert in slo.alerts.all()[:50]],
        "deploys": _deploys_on_burndown(list(deploys), state.budget_history, now=now),
    }


def _alert_history_row(alert: Alert) -> dict:
    return {
        "severity": alert.severity,
        "windows": alert.windows,
        "threshold": round(alert.threshold, 3),
        "long_burn_rate": round(alert.long_burn_rate, 3),
        "short_burn_rate": round(alert.short_burn_rate, 3),
        "budget_consumed_pct": round(alert.budget_consumed_pct, 3),
        "fired_at": alert.fired_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def _remaining_at(history: list[dict], at: datetime) -> float | None:
    """The burndown's remaining percent at an instant, from the nearest earlier point."""
    remaining = None
    for point in history:
        if point["at"] > at:
            break
        remaining = point["remaining_pct"]
    return remaining


def _deploys_on_burndown(deploys: list, history: list[dict], *, now: datetime) -> list[dict]:
    """Each deploy with the budget spent while it was the latest one."""
    rows = []
    for index, deploy in enumerate(deploys):
        until = deploys[index + 1].started_at if index + 1 < len(deploys) else now
        before = _remaining_at(history, deploy.started_at)
        after = _remaining_at(history, until)
        consumed = None if before is None or after is None else round(before - after, 3)
        rows.append({**_deploy_row(deploy), "budget_consumed_pct": consumed})
    return rows


# Deploys


def _deploy_row(deploy: Deployment) -> dict:
    return {
        "id": deploy.pk,
        "url": reverse("dashboard:deploy", args=[deploy.pk]),
        "service": deploy.service,
        "service_url": reverse("dashboard:service", args=[deploy.service]),
        "version": deploy.version,
        "previous_version": deploy.previous_version,
        "environment": deploy.environment,
        "started_at": deploy.deployed_at.isoformat(),
        "status": deploy.status,
        "source": deploy.source,
        "deployer": deploy.deployer,
        "verdict": deploy.verdict,
        "verdict_reason": deploy.verdict_reason,
        "rollback": deploy.rollback_of_id is not None,
    }


DEPLOY_PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEPLOY_LIST_LIMIT = 500


def deploys(*, now: datetime, service: str = "", verdict: str = "", period: str = "7d") -> dict:
    """The deploys timeline, newest first, with its filters applied."""
    since = now - DEPLOY_PERIODS.get(period, DEPLOY_PERIODS["7d"])
    rows = Deployment.objects.filter(started_at__gte=since).order_by("-started_at", "-id")
    if service:
        rows = rows.filter(service=service)
    if verdict in Verdict.values:
        rows = rows.filter(verdict=verdict)
    return {
        "generated_at": now.isoformat(),
        "since": since.isoformat(),
        "deploys": [_deploy_row(deploy) for deploy in rows[:DEPLOY_LIST_LIMIT]],
    }


def deploy_services() -> list[str]:
    return list(Deployment.objects.values_list("service", flat=True).distinct().order_by("service"))


METRIC_UNITS = {
    "error_rate": "ratio",
    "rollout_error_rate": "ratio",
    "latency_p50": "ms",
    "latency_p95": "ms",
    "latency_p99": "ms",
    "rollout_throughput": "req/min",
    "new_error_type": "count",
}
VERDICT_LEVELS = {
    Verdict.PASS: "ok",
    Verdict.FAIL: "bad",
    Verdict.INCONCLUSIVE: "warn",
    Verdict.PENDING: "info",
}
EXAMPLE_TRACES = 3


def _finding_row(finding: Finding) -> dict:
    unit = METRIC_UNITS.get(finding.metric, "")
    scale = 100 if unit == "ratio" else 1
    base = None if finding.baseline_value is None else finding.baseline_value * scale
    cand = None if finding.candidate_value is None else finding.candidate_value * scale
    p_value = finding.adjusted_p_value if finding.adjusted_p_value is not None else finding.p_value
    return {
        "metric": finding.metric,
        "unit": "%" if unit == "ratio" else unit,
        "route": finding.route or "(whole service)",
        "baseline": base,
        "candidate": cand,
        "baseline_n": finding.baseline_n,
        "candidate_n": finding.candidate_n,
        "change": None if base is None or cand is None else cand - base,
        "change_pct": 100 * (cand / base - 1) if base and cand is not None else None,
        "confidence_pct": None if p_value is None else round(100 * (1 - p_value), 3),
        "interval": [finding.interval_low, finding.interval_high]
        if finding.interval_low is not None
        else None,
        "threshold": finding.threshold,
        "significant": finding.significant,
        "direction": finding.direction,
        "detail": finding.detail,
    }


def deploy_page(deploy: Deployment, *, now: datetime) -> dict:
    """The verdict, its findings and history, charts, new errors, budget and suspects."""
    records = list(deploy.verdict_records.all())
    latest = records[-1] if records else None
    findings = [_finding_row(finding) for finding in latest.findings.all()] if latest else []
    new_errors = [
        {
            "error_type": row["detail"],
            "count": row["candidate"],
            "traces": queries.example_traces(
                deploy.service, deploy.version, row["detail"], since=deploy.deployed_at,
                limit=EXAMPLE_TRACES,
            ),
        }
        for row in findings
        if row["metric"] == "new_error_type"
    ]
    suspects = [
        {
            "rank": suspect.rank,
            "score": round(suspect.score, 3),
            "evidence": suspect.evidence,
            **_deploy_row(suspect.suspect),
        }
        for suspect in deploy.suspects.select_related("suspect")
    ]
    return {
        "generated_at": now.isoformat(),
        **_deploy_row(deploy),
        "commit_sha": deploy.commit_sha,
        "description": deploy.description,
        "link": deploy.url,
        "level": VERDICT_LEVELS.get(deploy.verdict, "info"),
        "checkpoint": latest.checkpoint if latest else None,
        "more_requests_needed": latest.more_requests_needed if latest else None,
        "history": [
            {
                "checkpoint": record.checkpoint,
                "verdict": record.verdict,
                "reason": record.reason,
                "baseline_kind": record.baseline_kind,
                "baseline_requests": record.baseline_requests,
                "candidate_requests": record.candidate_requests,
                "created_at": record.created_at.isoformat(),
            }
            for record in records
        ],
        "findings": [row for row in findings if row["metric"] != "new_error_type"],
        "new_errors": new_errors,
        "budget_impact": slo_link.budget_impact(
            deploy.service, deploy.version, deploy.deployed_at, now=now
        ),
        "suspects": suspects,
        "charts": queries.deploy_charts(
            deploy.service,
            deploy.version,
            deploy.previous_version,
            deployed_at=deploy.deployed_at,
            window_end=latest.window_end if latest and latest.window_end else None,
            now=now,
        ),
    }
