"""Incident notifications: the one function that hands them to the outbox."""

from datetime import datetime

from incidents.models import EntryKind, Incident, Severity, TimelineEntry

EVENTS = {
    "incident_opened": "opened",
    "incident_mitigated": "mitigated",
    "incident_resolved": "resolved",
    "incident_reopened": "reopened",
}


def message_fields(incident: Incident, event: str) -> dict:
    """The outbox Message's fields; every text may carry span data and is escaped by the outbox."""
    services = ", ".join(incident.services) or "no service named"
    return {
        "event": event,
        "severity": "ticket" if incident.severity == Severity.SEV3 else "page",
        "summary": f"Incident #{incident.pk} {EVENTS[event]}: {incident.title} ({services})",
        "link": incident.link(),
        "link_text": f"incident #{incident.pk}",
        "subject": f"incidents.incident:{incident.pk}",
        "details": {
            "incident_id": incident.pk,
            "status": incident.status,
            "incident_severity": incident.severity,
            "services": list(incident.services),
            "started_at": incident.started_at.isoformat(),
        },
    }


def notify(incident: Incident, event: str, *, now: datetime) -> None:
    """Queue the notification in the caller's transaction, and write it on the timeline."""
    fields = message_fields(incident, event)
    _queue(fields, now=now)
    TimelineEntry.objects.get_or_create(
        incident=incident,
        key=f"notify:{event}:{now.isoformat()}",
        defaults={
            "at": now,
            "kind": EntryKind.NOTIFICATION,
            "summary": f"Notification sent: incident {EVENTS[event]}",
        },
    )


def _queue(fields: dict, *, now: datetime) -> None:
    # Until the one outbox (notifications.outbox) is on main, nothing leaves:
    # the timeline entry records what would be sent.
    return None
