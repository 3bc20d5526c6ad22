"""Deploys, verdicts and the CD gate, under /api/v1/.

POST /deployments needs the `deploy` scope, the reads need `read`. The GitHub
receiver authenticates by its HMAC signature instead of a token. Suspects are
listed as deployments/suspects.py shows them (those with evidence, a handful)
unless `?all=1` asks for every one recorded.
"""

import hashlib
import hmac
import json
from datetime import datetime
from typing import Literal

from django.conf import settings
from django.db.models import Prefetch, prefetch_related_objects
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError

from deployments import events, gate, slo_link, suspects
from deployments.models import Deployment, DeploySource, DeployStatus, RouteShift, Suspect
from telemetry.api_types import UtcDatetime
from telemetry.auth import TokenAuth
from telemetry.models import TokenScope

router = Router(tags=["deployments"])
read_auth = TokenAuth(TokenScope.READ)
deploy_auth = TokenAuth(TokenScope.DEPLOY)
LIST_LIMIT = 500


class DeploymentIn(Schema):
    service: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=200)
    # None: the environment the version's spans name.
    environment: str | None = Field(None, min_length=1, max_length=100)
    commit_sha: str | None = None
    commit_time: UtcDatetime | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    deployer: str | None = None
    description: str | None = None
    url: str | None = None
    status: Literal["succeeded", "failed", "rolled_back", "in_progress"] | None = None


class DeploymentOut(Schema):
    id: int
    service: str
    version: str
    environment: str
    commit_sha: str
    commit_time: datetime | None
    started_at: datetime
    finished_at: datetime
    first_span_at: datetime | None
    deployer: str
    description: str
    url: str
    status: str
    source: str
    previous_version: str
    rollback_of: int | None = Field(None, alias="rollback_of_id")
    verdict: str
    verdict_reason: str
    evaluated_at: datetime | None
    link: str

    @staticmethod
    def resolve_link(obj) -> str:
        return obj.link() if isinstance(obj, Deployment) else obj["link"]


class FindingOut(Schema):
    metric: str
    route: str
    baseline_value: float | None
    candidate_value: float | None
    baseline_n: int
    candidate_n: int
    effect_size: float | None
    p_value: float | None
    adjusted_p_value: float | None
    interval_low: float | None
    interval_high: float | None
    threshold: str
    upper_bound: float | None
    within_threshold: bool
    significant: bool
    direction: str
    detail: str


class VerdictRecordOut(Schema):
    checkpoint: int
    verdict: str
    reason: str
    baseline_kind: str
    window_start: datetime | None
    window_end: datetime | None
    baseline_requests: int
    candidate_requests: int
    more_requests_needed: int | None
    created_at: datetime


class SuspectOut(Schema):
    """A deploy (`deployment`) or a change of another kind (`change`: a flag change)."""

    rank: int
    score: float
    evidence: str
    onset_at: datetime | None
    kind: str = Field(..., alias="suspect_kind")
    deployment: DeploymentOut | None = Field(None, alias="suspect")
    change: dict | None = None

    @staticmethod
    def resolve_change(obj: Suspect) -> dict | None:
        if obj.is_deploy:
            return None
        at = obj.suspect_at.isoformat() if obj.suspect_at else None
        return {"kind": obj.suspect_kind, "id": obj.suspect_change_id,
                "label": obj.suspect_label, "link": obj.suspect_link, "at": at}  # fmt: skip


class DeploymentDetailOut(DeploymentOut):
    checkpoint: int | None
    more_requests_needed: int | None
    verdict_history: list[VerdictRecordOut]
    findings: list[FindingOut]
    budget_impact: list[dict]
    suspects: list[SuspectOut]
    suspects_total: int


class RouteShiftOut(Schema):
    id: int
    service: str
    route: str
    metric: str
    baseline_value: float
    current_value: float
    baseline_n: int
    current_n: int
    p_value: float
    adjusted_p_value: float
    threshold: str
    window_start: datetime
    window_end: datetime
    detected_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    open: bool
    link: str
    suspects: list[SuspectOut]
    suspects_total: int

    @staticmethod
    def resolve_open(obj: RouteShift) -> bool:
        return obj.resolved_at is None

    @staticmethod
    def resolve_link(obj: RouteShift) -> str:
        return obj.link()

    @staticmethod
    def resolve_suspects(obj: RouteShift) -> list:
        return obj.listed_suspects.shown

    @staticmethod
    def resolve_suspects_total(obj: RouteShift) -> int:
        return obj.listed_suspects.total


class GateOut(Schema):
    service: str
    flag: str | None = None
    allow: bool
    reasons: list[str]


class ErrorOut(Schema):
    detail: str


# `?all=1`: every suspect recorded, not only the few with evidence.
ALL_SUSPECTS = Query(False, alias="all")


@router.post("/deployments", response={200: DeploymentOut, 201: DeploymentOut}, auth=deploy_auth)
def post_deployment(request, payload: DeploymentIn):
    deploy, created = events.record_deploy(payload.dict(), source=DeploySource.API)
    return Status(201 if created else 200, deploy)


@router.get("/deployments", response=list[DeploymentOut], auth=read_auth)
def list_deployments(
    request, service: str | None = None, since: UtcDatetime | None = None, limit: int = 100
):
    deploys = Deployment.objects.order_by("-started_at", "-id")
    if service:
        deploys = deploys.filter(service=service)
    if since:
        deploys = deploys.filter(started_at__gte=since)
    return deploys[: max(1, min(limit, LIST_LIMIT))]


@router.get("/deployments/{deployment_id}", response=DeploymentDetailOut, auth=read_auth)
def get_deployment(request, deployment_id: int, show_all: bool = ALL_SUSPECTS):
    deploy = get_object_or_404(Deployment, pk=deployment_id)
    listed = suspects.for_deploy(deploy, show_all=show_all)
    history = list(deploy.verdict_records.all())
    latest = deploy.latest_verdict_record()
    return {
        **DeploymentOut.from_orm(deploy).dict(),
        "checkpoint": latest.checkpoint if latest else None,
        "more_requests_needed": latest.more_requests_needed if latest else None,
        "verdict_history": history,
        "findings": list(deploy.latest_findings()),
        "budget_impact": slo_link.budget_impact(
            deploy.service, deploy.version, deploy.deployed_at, now=timezone.now()
        ),
        "suspects": listed.shown,
        "suspects_total": listed.total,
    }


@router.get("/alerts/{alert_id}/suspects", response=list[SuspectOut], auth=read_auth)
def get_alert_suspects(request, alert_id: int, show_all: bool = ALL_SUSPECTS):
    """The changes (deploys, flag changes) that may explain an SLO page alert, best first."""
    return suspects.for_alert(alert_id, show_all=show_all).shown


@router.get("/shifts", response=list[RouteShiftOut], auth=read_auth)
def list_shifts(
    request,
    service: str | None = None,
    open: bool | None = None,
    limit: int = 100,
    show_all: bool = ALL_SUSPECTS,
):
    """Routes that regressed while their service did not deploy, newest first."""
    shifts = RouteShift.objects.order_by("-detected_at", "-id")
    if service:
        shifts = shifts.filter(service=service)
    if open is not None:
        shifts = shifts.filter(resolved_at__isnull=open)
    return _with_suspects(shifts[: max(1, min(limit, LIST_LIMIT))], show_all)


@router.get("/shifts/{shift_id}", response=RouteShiftOut, auth=read_auth)
def get_shift(request, shift_id: int, show_all: bool = ALL_SUSPECTS):
    shift = get_object_or_404(RouteShift, pk=shift_id)
    return _with_suspects([shift], show_all)[0]


def _with_suspects(shifts, show_all: bool) -> list[RouteShift]:
    """The shifts, each with the suspects to list (one query for all of them)."""
    shifts = list(shifts)
    prefetch_related_objects(
        shifts, Prefetch("suspects", queryset=Suspect.objects.select_related("suspect"))
    )
    for shift in shifts:
        everything = list(shift.suspects.all())
        shift.listed_suspects = suspects.SuspectList(
            suspects.shown(everything, show_all=show_all), len(everything)
        )
    return shifts


@router.get(
    "/gate",
    response={200: GateOut, 404: ErrorOut, 409: GateOut},
    auth=read_auth,
    exclude_none=True,
)
def get_gate(
    request, service: str | None = None, flag: str | None = None, environment: str | None = None
):
    """200 when the service may deploy (or the flag's rollout widen), 409 with reasons if not.

    404 for a service or flag Monoenv does not know, naming the closest known
    ones, and for an environment a letter or two from one the service deploys
    to, so that a typo in a pipeline never passes.
    """
    if flag:
        unknown = gate.unknown_flag_message(flag)
        if unknown is not None:
            return Status(404, {"detail": unknown})
        answer = gate.check_flag(flag, now=timezone.now())
        return Status(200 if answer.allow else 409, answer)
    if not service:
        raise HttpError(422, "name a service or a flag")
    unknown = gate.unknown_service_message(service) or gate.mistyped_environment_message(
        service, environment
    )
    if unknown is not None:
        return Status(404, {"detail": unknown})
    answer = gate.check(service, now=timezone.now(), environment=environment)
    return Status(200 if answer.allow else 409, answer)


@router.post("/webhooks/github", auth=None, response={200: dict, 202: dict})
def github_webhook(request):
    _verify_github_signature(request)
    event = request.headers.get("X-GitHub-Event", "")
    if event == "ping":
        return Status(200, {"ok": True, "event": "ping"})
    if event != "deployment_status":
        return Status(202, {"ok": True, "ignored": f"event {event!r}"})
    try:
        body = json.loads(request.body)
        fields = github_deploy_fields(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise HttpError(400, f"not a deployment_status payload: {exc}") from exc
    if fields is None:
        return Status(202, {"ok": True, "ignored": "state inactive"})
    deploy, created = events.record_deploy(fields, source=DeploySource.GITHUB)
    return Status(200, {"ok": True, "id": deploy.pk, "created": created})


def _verify_github_signature(request) -> None:
    secret = settings.MONOENV_GITHUB_WEBHOOK_SECRET
    if not secret:
        raise HttpError(401, "MONOENV_GITHUB_WEBHOOK_SECRET is not set")
    signature = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise HttpError(401, "bad X-Hub-Signature-256")


GITHUB_STATES = {
    "success": DeployStatus.SUCCEEDED,
    "failure": DeployStatus.FAILED,
    "error": DeployStatus.FAILED,
    "pending": DeployStatus.IN_PROGRESS,
    "queued": DeployStatus.IN_PROGRESS,
    "in_progress": DeployStatus.IN_PROGRESS,
}


def github_deploy_fields(body: dict) -> dict | None:
    """A deploy from a deployment_status event; None for `inactive` (superseded)."""
    status, deployment = body["deployment_status"], body["deployment"]
    state = status["state"]
    if state not in GITHUB_STATES:
        return None
    extra = deployment.get("payload") if isinstance(deployment.get("payload"), dict) else {}
    terminal = GITHUB_STATES[state] != DeployStatus.IN_PROGRESS
    return {
        "service": str(extra.get("service") or body["repository"]["name"]),
        "version": str(extra.get("version") or deployment["sha"]),
        "environment": deployment.get("environment") or None,
        "commit_sha": deployment["sha"],
        "started_at": _github_time(deployment["created_at"]),
        "finished_at": _github_time(status["created_at"]) if terminal else None,
        "deployer": (deployment.get("creator") or {}).get("login", ""),
        "description": deployment.get("description") or status.get("description") or "",
        "url": status.get("target_url") or status.get("environment_url") or "",
        "status": GITHUB_STATES[state],
    }


def _github_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
