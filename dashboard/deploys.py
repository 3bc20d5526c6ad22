"""Deploy and flag change rows, the timeline of changes and the deploy page.

The timeline holds both kinds of change, deploys (deployments' records) and
flag changes (flags' records), newest first, filterable by kind.

A deploy page leads with the verdict in the user's words (dashboard.headline);
each finding links to example traces of the requests it is about.
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.urls import reverse

from dashboard import headline, traffic
from deployments import slo_link, suspects
from deployments.models import Deployment, Finding, Verdict
from flags.models import FlagChange
from telemetry import spans
from telemetry.otlp import hex_id

DEPLOY_PERIODS = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
LONGEST_DEFAULT_PERIOD = "7d"
DEPLOY_LIST_LIMIT = 500
EXAMPLE_TRACES = 3
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
    Verdict.RECOVERED: "ok",
}


CHANGE_KINDS = {"deploy": "deploys", "flag": "flag changes"}


def deploy_row(deploy: Deployment) -> dict:
    return {
        "kind": "deploy",
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


def flag_url(flag: str, **query) -> str:
    url = reverse("dashboard:flag", args=[flag])
    return url + "?" + urlencode(query) if query else url


def flag_change_row(change: FlagChange) -> dict:
    return {
        "kind": "flag",
        "id": change.pk,
        "url": flag_url(change.flag, change=change.pk),
        "flag": change.flag,
        "flag_url": flag_url(change.flag),
        "services": list(change.services),
        "environment": change.environment,
        "at": change.at.isoformat(),
        "source": change.source,
        "actor": change.actor,
        "description": change.description,
        "link": change.url,
        "rollout": change.rollout,
        "shares_before": share_pcts(change.shares_before),
        "shares_after": share_pcts(change.shares_after),
        "control": change.control,
        "verdict": change.verdict,
        "verdict_reason": change.verdict_reason,
        "level": VERDICT_LEVELS.get(change.verdict, "info"),
    }


def share_pcts(shares: dict) -> dict[str, float]:
    """Shares (fractions) as percentages, rounded as pages show them."""
    return {cohort: round(100 * share, 2) for cohort, share in sorted(shares.items())}


def latest_by_service() -> dict[str, Deployment]:
    latest = Deployment.objects.order_by("service", "-started_at", "-id").distinct("service")
    return {deploy.service: deploy for deploy in latest}


def fitting_period(*, now: datetime) -> str:
    """The shortest period that holds every change there is, deploy or flag, up to a week."""
    oldest = [
        rows.order_by(field).values_list(field, flat=True).first()
        for rows, field in ((Deployment.objects, "started_at"), (FlagChange.objects, "at"))
    ]
    first = min((at for at in oldest if at is not None), default=None)
    names = list(DEPLOY_PERIODS)
    for name in names[: names.index(LONGEST_DEFAULT_PERIOD) + 1]:
        if first is not None and now - first <= DEPLOY_PERIODS[name]:
            return name
    return LONGEST_DEFAULT_PERIOD


def timeline(*, now: datetime, service: str, verdict: str, period: str, kind: str = "") -> dict:
    """The timeline of changes, deploys and flag changes, newest first, filters applied."""
    since = now - DEPLOY_PERIODS[period]
    deploys = [] if kind == "flag" else _deploys_since(since, service, verdict)
    flag_changes = [] if kind == "deploy" else _flag_changes_since(since, service, verdict)
    changes = sorted(deploys + flag_changes, key=lambda row: row["at"], reverse=True)
    changes = changes[:DEPLOY_LIST_LIMIT]
    first = min((row["at"] for row in changes), default=since.isoformat())
    return {
        "generated_at": now.isoformat(),
        "period": period,
        "kind": kind if kind in CHANGE_KINDS else "",
        "since": since.isoformat(),
        # The chart starts where its data starts.
        "data_start": first,
        "deploys": [row for row in changes if row["kind"] == "deploy"],
        "changes": changes,
    }


def _deploys_since(since: datetime, service: str, verdict: str) -> list[dict]:
    rows = Deployment.objects.filter(started_at__gte=since).order_by("-started_at", "-id")
    if service:
        rows = rows.filter(service=service)
    if verdict in Verdict.values:
        rows = rows.filter(verdict=verdict)
    return [{**deploy_row(deploy), "at": deploy.deployed_at.isoformat()}
            for deploy in rows[:DEPLOY_LIST_LIMIT]]  # fmt: skip


def _flag_changes_since(since: datetime, service: str, verdict: str) -> list[dict]:
    rows = FlagChange.objects.filter(at__gte=since).order_by("-at", "-id")
    if service:
        rows = rows.filter(services__contains=[service])
    if verdict in Verdict.values:
        rows = rows.filter(verdict=verdict)
    return [flag_change_row(change) for change in rows[:DEPLOY_LIST_LIMIT]]


def deploy_services() -> list[str]:
    """The services the timeline can filter on: those deployed and those flag changes name."""
    deployed = set(Deployment.objects.values_list("service", flat=True).distinct())
    for services in FlagChange.objects.values_list("services", flat=True).distinct():
        deployed.update(services)
    return sorted(deployed)


def finding_row(finding: Finding) -> dict:
    unit = METRIC_UNITS.get(finding.metric, "")
    scale = 100 if unit == "ratio" else 1
    base = None if finding.baseline_value is None else finding.baseline_value * scale
    cand = None if finding.candidate_value is None else finding.candidate_value * scale
    p_value = finding.adjusted_p_value if finding.adjusted_p_value is not None else finding.p_value
    return {
        "metric": finding.metric,
        "unit": "%" if unit == "ratio" else unit,
        "route": finding.route or "(whole service)",
        "raw_route": finding.route,
        "baseline": base,
        "candidate": cand,
        "baseline_n": finding.baseline_n,
        "candidate_n": finding.candidate_n,
        "change": None if base is None or cand is None else cand - base,
        "change_pct": 100 * (cand / base - 1) if base and cand is not None else None,
        "p_value": p_value,
        "confidence_pct": None if p_value is None else round(100 * (1 - p_value), 3),
        "interval": [finding.interval_low, finding.interval_high]
        if finding.interval_low is not None
        else None,
        "threshold": finding.threshold,
        "significant": finding.significant,
        "direction": finding.direction,
        "detail": finding.detail,
    }


def _traces_link(deploy: Deployment, row: dict, start: datetime, end: datetime) -> str:
    """Trace search for the requests a finding is about: this version, route, failures or slow."""
    query = {
        "service": deploy.service,
        "version": deploy.version,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    if row["raw_route"]:
        query["route"] = row["raw_route"]
    if row["metric"] in headline.ERROR_METRICS or row["metric"] == "new_error_type":
        query["errors"] = "only"
    elif row["unit"] == "ms" and row["baseline"] is not None:
        query["min_ms"] = f"{row['baseline']:.3f}"
    return reverse("dashboard:traces") + "?" + urlencode(query)


def _suspect_row(suspect) -> dict:
    row = {"rank": suspect.rank, "score": round(suspect.score, 3), "evidence": suspect.evidence}
    if suspect.is_deploy:
        return {**row, **deploy_row(suspect.suspect)}
    # A flag change, named as a deploy is ("flag new-checkout") so the table reads alike.
    kind, _, name = suspect.suspect_label.partition(" ")
    at = suspect.suspect_at.isoformat() if suspect.suspect_at else None
    return {**row, "kind": suspect.suspect_kind, "service": kind, "version": name,
            "url": suspect.suspect_link, "verdict": "", "started_at": at}  # fmt: skip


def _suspect_rows(deploy: Deployment) -> tuple[list[dict], list[dict]]:
    """The few suspects that can explain the regression, and the rest, by rank."""
    every = suspects.for_deploy(deploy, show_all=True).shown
    few = suspects.shown(every)
    rest = [suspect for suspect in every if suspect not in few]
    return [_suspect_row(s) for s in few], [_suspect_row(s) for s in rest]


def _history(records: list) -> list[dict]:
    return [
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
    ]


def deploy_detail(deploy: Deployment, *, now: datetime) -> dict:
    """The verdict told plainly, its findings and history, charts, new errors, budget, suspects."""
    records = list(deploy.verdict_records.all())
    latest = records[-1] if records else None
    rows = [finding_row(finding) for finding in latest.findings.all()] if latest else []
    window_start = latest.window_start if latest and latest.window_start else deploy.deployed_at
    window_end = latest.window_end if latest and latest.window_end else now
    for row in rows:
        row["traces_url"] = _traces_link(deploy, row, window_start, window_end)
    few_suspects, more_suspects = _suspect_rows(deploy)
    charts = traffic.deploy_charts(
        deploy.service, deploy.version, deploy.previous_version,
        environment=deploy.environment, deployed_at=deploy.deployed_at,
        window_end=latest.window_end if latest else None, now=now,
    )  # fmt: skip
    return {
        **deploy_row(deploy),
        "commit_sha": deploy.commit_sha,
        "description": deploy.description,
        "link": deploy.url,
        "level": VERDICT_LEVELS.get(deploy.verdict, "info"),
        "checkpoint": latest.checkpoint if latest else None,
        "more_requests_needed": latest.more_requests_needed if latest else None,
        "headline": headline.headline(rows),
        "history": _history(records),
        "findings": [row for row in rows if row["metric"] != "new_error_type"],
        "new_errors": _new_errors(deploy, rows),
        "budget_impact": _budget_rows(deploy, now=now),
        "suspects": few_suspects,
        "more_suspects": more_suspects,
        "charts": charts,
        # Flag changes of the service around the deploy: a rollout may be the cause.
        "flag_changes": _flag_changes_between(deploy.service, charts["start"], charts["end"]),
    }  # fmt: skip


def _flag_changes_between(service: str, start: str, end: str) -> list[dict]:
    rows = FlagChange.objects.filter(
        services__contains=[service],
        at__gte=datetime.fromisoformat(start),
        at__lte=datetime.fromisoformat(end),
    )
    return [flag_change_row(change) for change in rows.order_by("at", "id")]


def _budget_rows(deploy: Deployment, *, now: datetime) -> list[dict]:
    """slo's budget use of this version, rounded as the SLO pages round it."""
    rows = slo_link.budget_impact(deploy.service, deploy.version, deploy.deployed_at, now=now)
    for row in rows:
        for key in ("budget_consumed_pct", "budget_remaining_pct"):
            if row.get(key) is not None:
                row[key] = round(row[key], 1)
    return rows


def _new_errors(deploy: Deployment, rows: list[dict]) -> list[dict]:
    return [
        {
            "error_type": row["detail"],
            "count": row["candidate"],
            "traces_url": row["traces_url"],
            "traces": [
                hex_id(trace_id)
                for trace_id in spans.example_trace_ids(
                    deploy.service, deploy.version, row["detail"], since=deploy.deployed_at,
                    limit=EXAMPLE_TRACES,
                )
            ],
        }
        for row in rows
        if row["metric"] == "new_error_type"
    ]  # fmt: skip


def serving_verdicts(latest: dict[str, Deployment], serving: dict) -> list[Deployment]:
    """Failed latest deploys whose version still serves (or whose service sends nothing)."""
    return [
        deploy
        for service, deploy in sorted(latest.items())
        if deploy.verdict == Verdict.FAIL
        and (service not in serving or deploy.version in serving[service].versions)
    ]
