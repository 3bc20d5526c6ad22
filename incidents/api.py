"""Incidents, post-mortems, action items and DORA metrics, under /api/v1/.

Reads need the `read` scope; writing incidents, notes, post-mortems and action
items needs `incident`. The person acting through a token is named by the
token's name.
"""

from datetime import datetime
from typing import Literal

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from incidents import actions, delivery, operations, postmortem
from incidents.models import ActionItem, Incident
from telemetry.api_types import UtcDatetime
from telemetry.auth import TokenAuth
from telemetry.models import TokenScope

router = Router(tags=["incidents"])
read_auth = TokenAuth(TokenScope.READ)
incident_auth = TokenAuth(TokenScope.INCIDENT)
LIST_LIMIT = 500
SeverityIn = Literal["sev1", "sev2", "sev3"]


class IncidentIn(Schema):
    title: str = Field(min_length=1, max_length=300)
    services: list[str] = Field(default_factory=list, max_length=50)
    severity: SeverityIn = "sev2"
    summary: str = Field("", max_length=10_000)
    started_at: UtcDatetime | None = None


class IncidentPatch(Schema):
    status: Literal["open", "mitigated", "resolved"] | None = None
    severity: SeverityIn | None = None
    title: str | None = Field(None, min_length=1, max_length=300)
    owner: str | None = Field(None, max_length=150)
    summary: str | None = Field(None, max_length=10_000)
    started_at: UtcDatetime | None = None
    mitigated_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None


class NoteIn(Schema):
    text: str = Field(min_length=1, max_length=operations.NOTE_LIMIT)


class PostMortemIn(Schema):
    markdown: str = Field(min_length=1, max_length=200_000)


class ActionItemIn(Schema):
    title: str = Field(min_length=1, max_length=300)
    kind: Literal["mitigate", "prevent", "process"] = "prevent"
    owner: str = Field("", max_length=150)
    status: Literal["open", "in_progress", "done", "wont_do"] = "open"
    link: str = Field("", max_length=1000)


class ActionItemPatch(Schema):
    title: str | None = Field(None, min_length=1, max_length=300)
    kind: Literal["mitigate", "prevent", "process"] | None = None
    owner: str | None = Field(None, max_length=150)
    status: Literal["open", "in_progress", "done", "wont_do"] | None = None
    link: str | None = Field(None, max_length=1000)


class ActionItemOut(Schema):
    id: int
    incident_id: int
    title: str
    kind: str
    owner: str
    status: str
    link: str
    created_at: datetime
    updated_at: datetime


class TimelineEntryOut(Schema):
    at: datetime
    kind: str
    summary: str
    link: str
    author: str


class IncidentOut(Schema):
    id: int
    title: str
    status: str
    severity: str
    services: list[str]
    environment: str
    owner: str
    summary: str
    trigger_kind: str
    trigger_summary: str
    trigger_link: str
    started_at: datetime
    detected_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    proposed_mitigated_at: datetime | None
    proposed_resolved_at: datetime | None
    proposal_reason: str
    budget_consumed_pct: float | None
    link: str

    # The detail view passes this schema's own output back in, as a dict.
    @staticmethod
    def resolve_link(obj) -> str:
        return obj.link() if isinstance(obj, Incident) else obj["link"]

    @staticmethod
    def resolve_budget_consumed_pct(obj) -> float | None:
        return obj.budget_burned_pct if isinstance(obj, Incident) else obj["budget_consumed_pct"]


class SignalOut(Schema):
    kind: str
    source_id: int
    service: str
    at: datetime
    summary: str
    link: str
    closed_at: datetime | None


class IncidentDetailOut(IncidentOut):
    signals: list[SignalOut]
    suspects: list[dict]
    impact: dict
    timeline: list[TimelineEntryOut]
    action_items: list[ActionItemOut]


@router.get("/incidents", response=list[IncidentOut], auth=read_auth)
def list_incidents(
    request, status: str | None = None, service: str | None = None,
    since: UtcDatetime | None = None, limit: int = 100,
):  # fmt: skip
    """Active incidents first, then resolved ones, each newest first."""
    incidents = Incident.objects.open_first()
    if status:
        incidents = incidents.filter(status=status)
    if service:
        incidents = incidents.filter(services__contains=[service])
    if since:
        incidents = incidents.filter(detected_at__gte=since)
    return incidents[: max(1, min(limit, LIST_LIMIT))]


@router.post("/incidents", response={201: IncidentDetailOut}, auth=incident_auth)
def create_incident(request, payload: IncidentIn):
    incident = operations.open_manually(
        title=payload.title, services=payload.services, severity=payload.severity,
        summary=payload.summary, started_at=payload.started_at, actor=_actor(request),
        now=timezone.now(),
    )  # fmt: skip
    return Status(201, detail(incident))


@router.get("/incidents/{incident_id}", response=IncidentDetailOut, auth=read_auth)
def get_incident(request, incident_id: int):
    return detail(get_object_or_404(Incident, pk=incident_id))


@router.patch("/incidents/{incident_id}", response=IncidentDetailOut, auth=incident_auth)
def patch_incident(request, incident_id: int, payload: IncidentPatch):
    incident = get_object_or_404(Incident, pk=incident_id)
    try:
        incident = operations.update(
            incident, payload.dict(exclude_unset=True), actor=_actor(request), now=timezone.now()
        )
    except operations.InvalidChange as exc:
        raise HttpError(422, str(exc)) from exc
    return detail(incident)


@router.post("/incidents/{incident_id}/notes", response={201: TimelineEntryOut},
             auth=incident_auth)  # fmt: skip
def post_note(request, incident_id: int, payload: NoteIn):
    incident = get_object_or_404(Incident, pk=incident_id)
    entry = operations.add_note(incident, payload.text, actor=_actor(request), now=timezone.now())
    return Status(201, entry)


@router.get("/incidents/{incident_id}/postmortem.md", auth=read_auth)
def get_postmortem(request, incident_id: int):
    incident = get_object_or_404(Incident, pk=incident_id)
    text = postmortem.refresh_draft(incident, now=timezone.now()).markdown
    response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="incident-{incident.pk}.md"'
    return response


@router.put("/incidents/{incident_id}/postmortem", response=dict, auth=incident_auth)
def put_postmortem(request, incident_id: int, payload: PostMortemIn):
    incident = get_object_or_404(Incident, pk=incident_id)
    saved = postmortem.save_edit(
        incident, payload.markdown, actor=_actor(request), now=timezone.now()
    )
    return {"incident_id": incident.pk, "edited": saved.edited,
            "revisions": saved.revisions.count()}  # fmt: skip


@router.get("/action-items", response=list[ActionItemOut], auth=read_auth)
def list_action_items(request, status: str | None = None, limit: int = 200):
    """Action items across incidents, unfinished first."""
    return actions.listed(status=status)[: max(1, min(limit, LIST_LIMIT))]


@router.post("/incidents/{incident_id}/action-items", response={201: ActionItemOut},
             auth=incident_auth)  # fmt: skip
def post_action_item(request, incident_id: int, payload: ActionItemIn):
    incident = get_object_or_404(Incident, pk=incident_id)
    return Status(201, actions.add(incident, payload.dict(), now=timezone.now()))


@router.patch("/action-items/{item_id}", response=ActionItemOut, auth=incident_auth)
def patch_action_item(request, item_id: int, payload: ActionItemPatch):
    item = get_object_or_404(ActionItem, pk=item_id)
    return actions.change(item, payload.dict(exclude_unset=True))


@router.get("/dora", response=dict, auth=read_auth)
def get_dora(request, service: str | None = None, environment: str | None = None, days: int = 30):
    """DORA's metrics from observed deploys, verdicts and incidents (levels: DORA 2024 report)."""
    if not 1 <= days <= 366:
        raise HttpError(422, "days must be between 1 and 366")
    return delivery.metrics(days=days, now=timezone.now(), service=service,
                            environment=environment)  # fmt: skip


def detail(incident: Incident) -> dict:
    return {
        **IncidentOut.from_orm(incident).dict(),
        "signals": list(incident.signals.all()),
        "suspects": incident.suspects,
        "impact": incident.impact,
        "timeline": list(incident.timeline.all()),
        "action_items": list(incident.action_items.all()),
    }


def _actor(request) -> str:
    token = getattr(request, "auth", None)
    return f"token {token.name}" if token is not None else "someone"
