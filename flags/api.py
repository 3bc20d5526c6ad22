"""Flags and their changes, under /api/v1/flags, and the flag systems' webhooks.

POST /flags/changes needs the `deploy` scope, the reads need `read`. The
webhook receivers authenticate by each system's own signature instead.
"""

import json
from datetime import datetime, timedelta

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from deployments.api import ALL_SUSPECTS, SuspectOut
from flags import changes, impact, suspects, webhooks
from flags.models import ChangeSource, FlagChange, FlagSettings
from telemetry import flag_store
from telemetry.api_types import UtcDatetime
from telemetry.auth import TokenAuth
from telemetry.models import TokenScope

router = Router(tags=["flags"])
read_auth = TokenAuth(TokenScope.READ)
deploy_auth = TokenAuth(TokenScope.DEPLOY)
LIST_LIMIT = 500
# "Current shares" are those of the last few minutes.
CURRENT_WINDOW = timedelta(minutes=15)


class FlagChangeIn(Schema):
    flag: str = Field(min_length=1, max_length=200)
    environment: str | None = Field(None, max_length=100)
    services: list[str] | None = None
    at: UtcDatetime | None = None
    actor: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=2000)
    url: str | None = Field(None, max_length=2000)
    rollout: dict[str, float] | None = None


class FlagChangeOut(Schema):
    id: int
    flag: str
    environment: str
    services: list[str]
    at: datetime
    actor: str
    description: str
    url: str
    rollout: dict
    source: str
    detected_at: datetime | None
    shares_before: dict
    shares_after: dict
    control: str
    control_reason: str
    verdict: str
    verdict_reason: str
    evaluated_at: datetime | None
    link: str

    @staticmethod
    def resolve_link(obj) -> str:
        return obj.link() if isinstance(obj, FlagChange) else obj["link"]


class FlagVerdictRecordOut(Schema):
    minute: int
    verdict: str
    reason: str
    control: str
    window_start: datetime
    window_end: datetime
    created_at: datetime


class FlagFindingOut(Schema):
    service: str
    variant: str
    route: str
    metric: str
    baseline_value: float | None
    candidate_value: float | None
    baseline_n: int
    candidate_n: int
    effect_size: float | None
    p_value: float | None
    adjusted_p_value: float | None
    threshold: str
    significant: bool
    direction: str
    detail: str


class FlagChangeDetailOut(FlagChangeOut):
    verdict_history: list[FlagVerdictRecordOut]
    findings: list[FlagFindingOut]
    budget_impact: list[dict]
    # Changes other than this flag that explain its failing cohort's regression.
    suspects: list[SuspectOut]


class FlagOut(Schema):
    flag: str
    services: list[str]
    variants: list[str]
    shares: dict[str, float]
    evaluations: int
    last_evaluated_at: datetime | None
    last_change: FlagChangeOut | None
    verdict: str | None


@router.post("/flags/changes", response={200: FlagChangeOut, 201: FlagChangeOut},
             auth=deploy_auth)  # fmt: skip
def post_change(request, payload: FlagChangeIn):
    change, created = changes.record_change(payload.dict(), source=ChangeSource.API)
    return Status(201 if created else 200, change)


class FlagControlIn(Schema):
    flag: str = Field(min_length=1, max_length=200)
    control: str = Field("", max_length=200, description="Empty: choose automatically.")


@router.put("/flags/control", response=FlagControlIn, auth=deploy_auth)
def put_control(request, payload: FlagControlIn):
    """Override the control cohort of a flag for its next changes (empty: automatic)."""
    FlagSettings.objects.update_or_create(flag=payload.flag, defaults={"control": payload.control})
    return payload


@router.get("/flags", response=list[FlagOut], auth=read_auth)
def list_flags(request):
    """Every flag evaluated lately or changed, with its current shares and last change."""
    now = timezone.now()
    seen = {f.flag: f for f in flag_store.flags_seen(now - CURRENT_WINDOW, now)}
    latest = {}
    for change in FlagChange.objects.order_by("flag", "-at", "-id").distinct("flag")[:LIST_LIMIT]:
        latest[change.flag] = change
    return [_flag_out(flag, seen.get(flag), latest.get(flag)) for flag in sorted(seen | latest)]


def _flag_out(flag: str, seen, change) -> dict:
    counts = seen.cohorts if seen else {}
    total = sum(counts.values())
    return {
        "flag": flag,
        "services": list(seen.services) if seen else (change.services if change else []),
        "variants": sorted(counts),
        "shares": {cohort: round(n / total, 4) for cohort, n in sorted(counts.items())},
        "evaluations": total,
        "last_evaluated_at": seen.last_at if seen else None,
        "last_change": change,
        "verdict": change.verdict if change else None,
    }


@router.get("/flags/changes", response=list[FlagChangeOut], auth=read_auth)
def list_changes(
    request,
    flag: str | None = None,
    service: str | None = None,
    since: UtcDatetime | None = None,
    limit: int = 100,
):
    """Flag changes, newest first."""
    rows = FlagChange.objects.order_by("-at", "-id")
    if flag:
        rows = rows.filter(flag=flag)
    if service:
        rows = rows.filter(services__contains=[service])
    if since:
        rows = rows.filter(at__gte=since)
    return rows[: max(1, min(limit, LIST_LIMIT))]


@router.get("/flags/changes/{change_id}", response=FlagChangeDetailOut, auth=read_auth)
def get_change(request, change_id: int, show_all: bool = ALL_SUSPECTS):
    change = get_object_or_404(FlagChange, pk=change_id)
    history = list(change.verdict_records.all())
    latest = history[-1] if history else None
    return {
        **FlagChangeOut.from_orm(change).dict(),
        "verdict_history": history,
        "findings": list(latest.findings.all()) if latest else [],
        "budget_impact": impact.budget_impact(change, now=timezone.now()),
        "suspects": suspects.for_change_listed(change, show_all=show_all),
    }


# Webhooks of flag systems.


def _receive(request, mapper, source: str):
    try:
        body = json.loads(request.body)
        fields = mapper(body) if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HttpError(400, f"not a {source} webhook payload: {exc}") from exc
    if fields is None:
        return Status(202, {"ok": True, "ignored": "changes no flag"})
    change, created = changes.record_change(fields, source=source)
    return Status(200, {"ok": True, "id": change.pk, "created": created})


def _verify(check) -> None:
    try:
        check()
    except webhooks.BadSignature as exc:
        raise HttpError(401, str(exc)) from exc


@router.post("/webhooks/unleash", auth=None, response={200: dict, 202: dict})
def unleash_webhook(request):
    _verify(lambda: webhooks.check_shared_secret(
        settings.MONOENV_UNLEASH_WEBHOOK_SECRET, request.headers.get("Authorization", ""),
        header="Authorization",
    ))  # fmt: skip
    return _receive(request, webhooks.unleash_change, ChangeSource.UNLEASH)


@router.post("/webhooks/flagsmith", auth=None, response={200: dict, 202: dict})
def flagsmith_webhook(request):
    _verify(lambda: webhooks.check_hmac_sha256(
        settings.MONOENV_FLAGSMITH_WEBHOOK_SECRET, request.body,
        request.headers.get("X-Flagsmith-Signature", ""), header="X-Flagsmith-Signature",
    ))  # fmt: skip
    return _receive(request, webhooks.flagsmith_change, ChangeSource.FLAGSMITH)


@router.post("/webhooks/launchdarkly", auth=None, response={200: dict, 202: dict})
def launchdarkly_webhook(request):
    _verify(lambda: webhooks.check_hmac_sha256(
        settings.MONOENV_LAUNCHDARKLY_WEBHOOK_SECRET, request.body,
        request.headers.get("X-LD-Signature", ""), header="X-LD-Signature",
    ))  # fmt: skip
    return _receive(request, webhooks.launchdarkly_change, ChangeSource.LAUNCHDARKLY)
