"""What the Incidents, incident and Delivery pages show, as JSON-ready dicts.

Reads go through the incidents app (its models and delivery module); nothing
here computes what incidents already keeps (impact, suspects, outcomes).
"""

from datetime import datetime

from django.urls import reverse

from incidents import delivery
from incidents.models import ActionItem, Incident, Status

LIST_LIMIT = 100
PERIODS = (7, 30, 90)


def incident_row(incident: Incident, *, now: datetime) -> dict:
    return {
        "id": incident.pk,
        "url": reverse("dashboard:incident", args=[incident.pk]),
        "title": incident.title,
        "status": incident.status,
        "severity": incident.severity,
        "services": incident.services,
        "started_at": incident.started_at.isoformat(),
        "detected_at": incident.detected_at.isoformat(),
        "duration_seconds": incident.duration(now=now).total_seconds(),
        "budget_burned_pct": incident.budget_burned_pct,
        "proposal": _proposal(incident),
    }


def _proposal(incident: Incident) -> str:
    if incident.status == Status.RESOLVED:
        return ""
    if incident.proposed_resolved_at:
        return "resolved"
    if incident.proposed_mitigated_at and incident.status == Status.OPEN:
        return "mitigated"
    return ""


def incidents_page(*, now: datetime) -> dict:
    incidents = Incident.objects.open_first()[:LIST_LIMIT]
    items = ActionItem.objects.select_related("incident").order_by("status", "-created_at")[:200]
    return {
        "generated_at": now.isoformat(),
        "incidents": [incident_row(incident, now=now) for incident in incidents],
        "action_items": [
            {**action_item(item), "incident_title": item.incident.title,
             "incident_url": reverse("dashboard:incident", args=[item.incident_id])}
            for item in items
        ],  # fmt: skip
    }


def open_incidents(*, now: datetime) -> list[dict]:
    return [incident_row(i, now=now) for i in Incident.objects.active().order_by("-detected_at")]


def action_item(item: ActionItem) -> dict:
    return {"id": item.pk, "title": item.title, "kind": item.kind, "owner": item.owner,
            "status": item.status, "link": item.link}  # fmt: skip


def incident_page(incident: Incident, *, now: datetime) -> dict:
    times = {
        name: getattr(incident, name).isoformat() if getattr(incident, name) else None
        for name in ("started_at", "detected_at", "acknowledged_at", "mitigated_at",
                     "resolved_at", "proposed_mitigated_at", "proposed_resolved_at")
    }  # fmt: skip
    return {
        "generated_at": now.isoformat(),
        **incident_row(incident, now=now),
        "times": times,
        "proposal_reason": incident.proposal_reason,
        "impact": incident.impact,
        "suspects": incident.suspects,
        "timeline": [
            {"at": e.at.isoformat(), "kind": e.kind, "summary": e.summary, "link": e.link,
             "author": e.author}
            for e in incident.timeline.all()
        ],  # fmt: skip
        "changes": [
            {"at": e.at.isoformat(), "summary": e.summary, "kind": e.kind}
            for e in incident.timeline.filter(kind__in=["deploy", "rollback", "flag"])
        ],
        "action_items": [action_item(item) for item in incident.action_items.all()],
    }


def delivery_page(*, days: int, service: str | None, environment: str | None,
                  now: datetime) -> dict:  # fmt: skip
    metrics, services = delivery.page(
        days=days, now=now, service=service, environment=environment, per_service=True
    )
    return {"generated_at": now.isoformat(), "metrics": metrics, "services": services}
