"""SLO API under /api/v1/slos: read scope to read, deploy scope to write."""

from datetime import datetime
from decimal import Decimal
from typing import Literal

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Router, Schema
from ninja.errors import HttpError

from slo import openslo, status
from slo.models import SLO, SPAN_KIND_NAMES
from telemetry.auth import TokenAuth
from telemetry.models import TokenScope

router = Router(tags=["slos"], auth=TokenAuth(TokenScope.READ))
write_auth = TokenAuth(TokenScope.DEPLOY)
SpanKindName = Literal[tuple(SPAN_KIND_NAMES)]


class SLOIn(Schema):
    name: str
    display_name: str = ""
    service: str
    route: str = ""
    span_kind: SpanKindName = "server"
    sli: Literal["availability", "latency"] = "availability"
    threshold_ms: Decimal | None = None
    latency_requires_success: bool = False
    objective: Decimal
    window: str = "30d"
    timezone: str = "UTC"
    budgeting: Literal["occurrences", "timeslices"] = "occurrences"
    timeslice_target: Decimal | None = None


class SLOOut(SLOIn):
    id: int
    threshold_ms: float | None
    objective: float
    timeslice_target: float | None
    created_at: datetime
    updated_at: datetime


class SLIOut(Schema):
    value: float | None
    good: int
    total: int
    unit: str


class AlertOut(Schema):
    id: int
    severity: str
    windows: str
    threshold: float
    long_burn_rate: float
    short_burn_rate: float
    fired_at: datetime


class HistoryPoint(Schema):
    at: datetime
    remaining_pct: float
    complete: bool


class SLIPoint(Schema):
    at: datetime
    sli: float
    good: int
    total: int
    events: int
    complete: bool


class TierOut(Schema):
    severity: str
    windows: str
    threshold: float
    long_burn_rate: float
    short_burn_rate: float
    firing: bool
    fired_at: datetime | None
    calm_since: datetime | None


class StatusOut(Schema):
    slo: SLOOut
    sli: SLIOut
    objective: float
    events: int
    budget_total: float
    budget_consumed: float
    budget_consumed_pct: float
    budget_remaining_pct: float
    budget_projected: bool
    learning: bool
    burn_rates: dict[str, float]
    tiers: list[TierOut]
    time_to_exhaustion: float | None
    alerts: list[AlertOut]
    window_start: datetime
    window_end: datetime
    complete_until: datetime
    budget_history: list[HistoryPoint]
    sli_history: list[SLIPoint]


class ImportOut(Schema):
    imported: list[str]


def _out(slo: SLO) -> dict:
    return {"id": slo.pk, **slo.definition(), "created_at": slo.created_at,
            "updated_at": slo.updated_at}  # fmt: skip


def _save(slo: SLO, payload: SLOIn) -> SLO:
    try:
        slo.set_definition(payload.dict())
        slo.full_clean()
    except ValidationError as exc:
        raise HttpError(422, "; ".join(f"{k}: {' '.join(v)}" for k, v in _messages(exc))) from exc
    slo.save()
    return slo


def _messages(exc: ValidationError):
    return exc.message_dict.items() if hasattr(exc, "error_dict") else [("slo", exc.messages)]


@router.get("/slos", response=list[SLOOut])
def list_slos(request):
    return [_out(slo) for slo in SLO.objects.all()]


@router.post("/slos", response={201: SLOOut}, auth=write_auth)
def create_slo(request, response: HttpResponse, payload: SLOIn):
    response.status_code = 201
    return _out(_save(SLO(), payload))


# Declared before /slos/{slo_id} so "openslo" is never read as an id.
@router.get("/slos/openslo", auth=TokenAuth(TokenScope.READ))
def export_openslo(request):
    documents = [openslo.to_document(slo.definition()) for slo in SLO.objects.all()]
    return HttpResponse(openslo.dump_yaml(documents), content_type="application/yaml")


@router.post("/slos/openslo", response=ImportOut, auth=write_auth)
def import_openslo(request):
    try:
        definitions = openslo.parse(openslo.load_yaml(request.body.decode("utf-8")))
        applied = SLO.objects.apply_definitions(definitions)
    except UnicodeDecodeError as exc:
        raise HttpError(400, "the body must be UTF-8 YAML") from exc
    except openslo.OpenSLOError as exc:
        raise HttpError(400, str(exc)) from exc
    except ValidationError as exc:
        raise HttpError(400, "; ".join(exc.messages)) from exc
    return {"imported": [slo.name for slo in applied]}


@router.get("/slos/{int:slo_id}", response=StatusOut)
def get_slo(request, slo_id: int):
    slo = get_object_or_404(SLO, pk=slo_id)
    now = timezone.now()
    found = status.status(slo, now=now)
    exhaustion = found.time_to_exhaustion
    return {
        "slo": _out(slo),
        "sli": {"value": found.sli, "good": found.good, "total": found.total, "unit": found.unit},
        "objective": found.objective,
        "events": found.events,
        "budget_total": found.budget_total,
        "budget_consumed": found.budget_consumed,
        "budget_consumed_pct": found.budget_consumed_pct,
        "budget_remaining_pct": found.budget_remaining_pct,
        "budget_projected": found.budget_projected,
        "learning": found.learning,
        "burn_rates": found.burn_rates,
        "tiers": [_tier_out(tier) for tier in found.tiers],
        "time_to_exhaustion": exhaustion.total_seconds() if exhaustion is not None else None,
        "alerts": [tier.alert for tier in found.firing_tiers],
        "window_start": found.window_start,
        "window_end": found.window_end,
        "complete_until": found.complete_until,
        "budget_history": found.budget_history,
        "sli_history": found.sli_history,
    }


def _tier_out(tier: status.TierState) -> dict:
    return {
        "severity": tier.severity,
        "windows": tier.windows,
        "threshold": tier.threshold,
        "long_burn_rate": tier.long_burn_rate,
        "short_burn_rate": tier.short_burn_rate,
        "firing": tier.firing,
        "fired_at": tier.alert.fired_at if tier.alert else None,
        "calm_since": tier.alert.calm_since if tier.alert else None,
    }


@router.put("/slos/{int:slo_id}", response=SLOOut, auth=write_auth)
def update_slo(request, slo_id: int, payload: SLOIn):
    return _out(_save(get_object_or_404(SLO, pk=slo_id), payload))


@router.delete("/slos/{int:slo_id}", auth=write_auth)
def delete_slo(request, slo_id: int):
    get_object_or_404(SLO, pk=slo_id).delete()
    return HttpResponse(status=204)
