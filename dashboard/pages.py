"""What each page shows: traffic, SLOs and deploys gathered for one page.

The dashboard sits downstream of telemetry, slo and deployments and only
reads what they export (telemetry.spans and telemetry.coarse_rollups, slo's
statuses, deployments' models). Views call one function here per page.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.urls import reverse

from dashboard import deploys, figures, slos, traffic
from dashboard import flags as flag_data
from dashboard.figures import TimeRange
from deployments import events, route_watch
from deployments.models import Deployment, RouteShift, Verdict
from slo.models import SLO, Severity
from telemetry.demo import is_demo

BANNERS_SHOWN = 3
# A service with no span for this long is shown as silent rather than serving.
SILENT_AFTER = timedelta(minutes=5)


# Overview


def overview(*, now: datetime, window: str = "1h") -> dict:
    """Every service: its traffic, what serves now, SLO budget and latest deploy; urgent first."""
    stats = traffic.overview(now=now, window=window)
    serving = events.serving_now(now=now)
    slo_rows = slos.slo_rows(now=now)
    latest = deploys.latest_by_service()
    slos_by_service = defaultdict(list)
    for row in slo_rows:
        slos_by_service[row["service"]].append(row)
    rows = []
    for name in sorted(set(stats) | set(latest) | set(slos_by_service)):
        deploy = latest.get(name)
        row = {
            "service": name,
            "demo": is_demo(name),
            "url": reverse("dashboard:service", args=[name]),
            **(stats.get(name) or _no_traffic()),
            **_serving(serving.get(name), now=now),
            "slo": _worst_slo(slos_by_service[name]),
            "deploy": deploys.deploy_row(deploy) if deploy else None,
        }
        row["urgency"] = _urgency(row, slos_by_service[name])
        rows.append(row)
    rows.sort(key=lambda row: (-row["urgency"], -(row["rate"] or 0), row["service"]))
    banners = (
        slos.banners(slo_rows)
        + _deploy_banners(deploys.serving_verdicts(latest, serving))
        + _shift_banners()
    )
    start, end = traffic.overview_window(now, window)
    return {
        "generated_at": now.isoformat(),
        "window": window,
        "windows": list(traffic.OVERVIEW_WINDOWS),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "banners": banners[:BANNERS_SHOWN],
        "more_banners": banners[BANNERS_SHOWN:],
        "services": rows,
    }


def _no_traffic() -> dict:
    return {"requests": 0, "rate": None, "error_pct": None, "p50_ms": None, "p95_ms": None,
            "p99_ms": None, "spark": [], "spark_start": None}  # fmt: skip


def _serving(serving: events.Serving | None, *, now: datetime) -> dict:
    """What the service runs now (deployments' rule), and since when it is silent, if it is."""
    if serving is None:
        return {"serving": [], "serving_deploy": None, "silent_since": None}
    quiet = now - serving.last_seen > SILENT_AFTER
    return {
        "serving": [version for version in serving.versions if version],
        "serving_deploy": deploys.deploy_row(serving.deploy) if serving.deploy else None,
        "silent_since": serving.last_seen.isoformat() if quiet else None,
    }


def _worst_slo(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    order = {"bad": 0, "warn": 1, "info": 2, "ok": 3}
    worst = min(rows, key=lambda row: (order[row["level"]], row["budget_remaining_pct"]))
    names = ", ".join(f"{row['name']}: {row['budget_remaining_pct']:.1f}% left" for row in rows)
    return {
        "budget_remaining_pct": worst["budget_remaining_pct"],
        "learning": worst["learning"],
        "level": worst["level"],
        "url": worst["url"],
        "title": names,
        "count": len(rows),
    }


def _urgency(row: dict, slo_rows: list[dict]) -> float:
    """A score to sort by: firing pages, then failing deploys, then burning budgets."""
    severities = {slo["alert"]["severity"] for slo in slo_rows if slo["alert"]}
    score = 0.0
    if Severity.PAGE in severities:
        score += 1000
    if row["deploy"] and row["deploy"]["verdict"] == Verdict.FAIL:
        score += 800
    if Severity.TICKET in severities:
        score += 400
    judged = [slo["budget_remaining_pct"] for slo in slo_rows if not slo["learning"]]
    if judged:
        lowest = min(judged)
        score += 200 if lowest <= 0 else 100 if lowest < 25 else 0
    return score + min(row["error_pct"] or 0.0, 100.0)


def _deploy_banners(failed: list[Deployment]) -> list[dict]:
    return [
        {
            "level": "bad",
            "text": f"Deploy of {deploy.service}{' (demo)' if is_demo(deploy.service) else ''} "
            f"{deploy.version} failed its analysis: "
            f"{deploy.verdict_reason}",
            "at": deploy.deployed_at.isoformat(),
            "at_label": "deployed",
            "url": reverse("dashboard:deploy", args=[deploy.pk]),
            "link_text": "Open the deploy",
        }
        for deploy in failed
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


# Service


def default_range(service: str, *, now: datetime) -> str:
    return figures.fitting_range(traffic.service_age(service, now=now))


def service_page(service: str, time_range: TimeRange, *, now: datetime) -> dict:
    data = traffic.service_traffic(service, time_range, now=now)
    start, end = time_range.bounds(now)
    service_deploys = Deployment.objects.filter(service=service)
    versions = [row["version"] for row in data["versions"]]
    by_version = {
        deploy.version: deploys.deploy_row(deploy)
        for deploy in service_deploys.filter(version__in=versions).order_by("started_at", "id")
    }
    for version in data["versions"]:
        version["deploy"] = by_version.get(version["version"])
    in_range = service_deploys.filter(started_at__gte=start, started_at__lt=end)
    return {
        "generated_at": now.isoformat(),
        "service": service,
        "demo": is_demo(service),
        "range": time_range.name,
        **data,
        "slos": slos.slo_rows(now=now, service=service),
        "deploys": [deploys.deploy_row(deploy) for deploy in in_range.order_by("started_at", "id")],
        "flag_changes": flag_data.changes_for_service(service, start, end),
    }


# SLOs


def budgets(*, now: datetime) -> dict:
    rows = slos.slo_rows(now=now)
    for row in rows:
        row["demo"] = is_demo(row["service"])
    return {"generated_at": now.isoformat(), "slos": rows}


def slo_page(slo: SLO, *, now: datetime, chart_range: str | None = None) -> dict:
    """Status, SLI and burndown over a chart range, tiers, burn rates, alerts and deploys."""
    state, detail = slos.slo_detail(slo, now=now, chart_range=chart_range)
    in_window = list(
        Deployment.objects.filter(
            service=slo.service, started_at__gte=state.window_start, started_at__lt=state.window_end
        ).order_by("started_at", "id")
    )
    spent = slos.deploy_budget_use(slo, state, in_window, now=now)
    chart_start, chart_end = (
        datetime.fromisoformat(detail[key]) for key in ("chart_start", "chart_end")
    )
    return {
        "generated_at": now.isoformat(),
        **detail,
        "demo": is_demo(slo.service),
        "alert_history": slos.alert_history(slo),
        # Marked on the charts as on the service's (both ends of the chart included).
        "flag_changes": flag_data.changes_for_service(
            slo.service, chart_start, chart_end + timedelta(microseconds=1)
        ),
        "deploys": [
            {**deploys.deploy_row(deploy), "budget_consumed_pct": share}
            for deploy, share in zip(in_window, spent, strict=True)
        ],
    }


# Deploys


def deploys_page(
    *, now: datetime, service: str = "", verdict: str = "", period: str = "", kind: str = ""
) -> dict:
    if period not in deploys.DEPLOY_PERIODS:
        period = deploys.fitting_period(now=now)
    data = deploys.timeline(now=now, service=service, verdict=verdict, period=period, kind=kind)
    for row in data["changes"]:
        services = [row["service"]] if row["kind"] == "deploy" else row["services"]
        row["demo"] = any(is_demo(name) for name in services)
    return data


def deploy_page(deploy: Deployment, *, now: datetime) -> dict:
    return {"generated_at": now.isoformat(), "demo": is_demo(deploy.service),
            **deploys.deploy_detail(deploy, now=now)}  # fmt: skip
