"""Small factories for the signals incidents read: SLOs with minutes, alerts, deploys, shifts."""

import json
from datetime import datetime, timedelta

from deployments.models import Deployment, DeployStatus, RouteShift, Suspect, Verdict
from slo.models import SLO, Alert, Severity, SLOMinute
from telemetry import histogram, ingest
from telemetry.models import RollupMinute, SpanKind
from telemetry.otlp import SPAN_COLUMNS

MINUTE = timedelta(minutes=1)


def make_slo(name: str = "checkout-availability", service: str = "checkout", **fields) -> SLO:
    slo = SLO()
    slo.set_definition({"name": name, "service": service, "objective": "99", **fields})
    slo.full_clean()
    slo.save()
    SLO.objects.filter(pk=slo.pk).update(backfilled_key=slo.selection_key)
    return slo


def slo_minutes(slo: SLO, start: datetime, count: int, *, bad: int, total: int = 100) -> None:
    SLOMinute.objects.bulk_create(
        SLOMinute(slo=slo, minute=start + MINUTE * i, good=total - bad, total=total)
        for i in range(count)
    )


def page_alert(slo: SLO, fired_at: datetime, *, resolved_at: datetime | None = None) -> Alert:
    return Alert.objects.create(
        slo=slo, severity=Severity.PAGE, long_window=timedelta(hours=1),
        short_window=timedelta(minutes=5), threshold=14.4, long_burn_rate=20.0,
        short_burn_rate=30.0, budget_consumed_pct=3.0, fired_at=fired_at,
        resolved_at=resolved_at, last_evaluated_at=fired_at,
    )  # fmt: skip


def deploy(service: str, version: str, at: datetime, **fields) -> Deployment:
    values = {"started_at": at, "finished_at": at, "environment": "production",
              "status": DeployStatus.SUCCEEDED, "verdict": Verdict.PASS}  # fmt: skip
    values.update(fields)
    return Deployment.objects.create(service=service, version=version, **values)


def failed_deploy(service: str, version: str, at: datetime, *, evaluated_at=None, **fields):
    reason = "error rate rose from 0.1% to 12% on GET /pay"
    return deploy(service, version, at, verdict=Verdict.FAIL, first_span_at=at,
                  evaluated_at=evaluated_at or at + 5 * MINUTE, verdict_reason=reason,
                  **fields)  # fmt: skip


def shift(service: str, route: str, detected_at: datetime, **fields) -> RouteShift:
    values = {"metric": "error_rate", "baseline_value": 0.01, "current_value": 0.2,
              "baseline_n": 1000, "current_n": 500, "p_value": 1e-9, "adjusted_p_value": 1e-8,
              "window_start": detected_at - 10 * MINUTE, "window_end": detected_at,
              "detected_at": detected_at, "last_seen_at": detected_at}  # fmt: skip
    values.update(fields)
    return RouteShift.objects.create(service=service, route=route, **values)


def suspect_of_alert(alert: Alert, deployment: Deployment, *, score: float = 0.9) -> Suspect:
    return Suspect.objects.create(
        alert_id=alert.pk, suspect=deployment, rank=1, score=score, evidence="deployed just before"
    )


def rollups(service: str, start: datetime, count: int, *, errors: int, requests: int = 100,
            route: str = "GET /pay") -> None:  # fmt: skip
    RollupMinute.objects.bulk_create(
        RollupMinute(service=service, route=route, version="1", span_kind=SpanKind.SERVER,
                     minute=start + MINUTE * i, requests=requests, errors=errors,
                     latency_histogram=histogram.empty())  # fmt: skip
        for i in range(count)
    )


def span(service: str, start: datetime, *, trace_id: bytes, span_id: bytes,
         parent: bytes | None = None, error: bool = False, duration_ms: float = 20,
         attributes: dict | None = None, kind: int = SpanKind.SERVER) -> tuple:  # fmt: skip
    """One span row in telemetry.otlp.SPAN_COLUMNS order."""
    values = {
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": parent,
        "service": service, "service_version": "1", "environment": "production",
        "name": "GET /pay", "kind": kind, "start_time": start,
        "duration_us": int(duration_ms * 1000), "status_code": 2 if error else 0,
        "status_message": "", "http_route": "GET /pay", "http_status": 500 if error else 200,
        "http_method": "GET", "is_error": error, "exception_type": "",
        "attributes": json.dumps(attributes or {}), "resource_attributes": "{}", "events": "[]",
    }  # fmt: skip
    return tuple(values[column] for column in SPAN_COLUMNS)


def store(rows: list[tuple]) -> None:
    ingest.store_rows(rows)


def call(caller: str, callee: str, at: datetime, index: int) -> list[tuple]:
    """A trace where `caller` serves a request and calls `callee`."""
    trace_id = index.to_bytes(16, "big")
    root, child = (2 * index).to_bytes(8, "big"), (2 * index + 1).to_bytes(8, "big")
    return [
        span(caller, at, trace_id=trace_id, span_id=root),
        span(callee, at, trace_id=trace_id, span_id=child, parent=root),
    ]
