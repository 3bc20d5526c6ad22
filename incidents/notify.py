"""Incident notifications: the one function that hands them to the outbox.

The outbox (notifications.outbox) records one delivery per interested target
in the caller's transaction, renders it per target kind (escaping for Slack
every text, which may carry span data) and retries with its one policy.
"""

from datetime import datetime

from incidents.models import EntryKind, Incident, Severity, TimelineEntry
from notifications import outbox
from notifications.message import Message

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
    deliveries = outbox.queue(Message(**message_fields(incident, event)), now=now)
    targets = f" to {len(deliveries)} target(s)" if deliveries else " (no target takes it)"
    TimelineEntry.objects.get_or_create(
        incident=incident,
        key=f"notify:{event}:{now.isoformat()}",
        defaults={
            "at": now,
            "kind": EntryKind.NOTIFICATION,
            "summary": f"Notification queued{targets}: incident {EVENTS[event]}",
        },
    )
