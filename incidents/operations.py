"""Opening, grouping and changing incidents: the only writers of Incident rows.

Invariants:
- a signal joins at most one incident (IncidentSignal is unique on its source);
- a new signal joins the active incident whose last signal is within
  MONOENV_INCIDENT_GROUP_MINUTES and that shares a service with it, or has a
  service connected to it in the traces; otherwise it opens one;
- started_at <= detected_at, and detected_at is the first signal's time;
- Monoenv only *proposes* mitigated and resolved; the status and its times
  change by a person's hand (update()), who may also reopen;
- acknowledged_at is set once, by the first human action.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from incidents import lifecycle, notify, sources
from incidents.models import (
    EntryKind,
    Incident,
    IncidentSignal,
    Severity,
    SignalKind,
    Status,
    TimelineEntry,
)

NOTE_LIMIT = 10_000


def group_window() -> timedelta:
    return timedelta(minutes=settings.MONOENV_INCIDENT_GROUP_MINUTES)


def record_signal(signal: sources.Signal, *, now: datetime) -> tuple[Incident, bool]:
    """Open an incident for a new signal, or add it to the active one it belongs to.

    Returns the incident, and whether the signal opened it.
    """
    started = regression_start(signal)
    with transaction.atomic():
        incident = matching_incident(signal)
        opened = incident is None
        if opened:
            incident = _open(signal, started, now=now)
        else:
            _join(incident, signal, started)
        IncidentSignal.objects.create(
            incident=incident, kind=signal.kind, source_id=signal.source_id,
            service=signal.service, at=signal.at, summary=signal.summary, link=signal.link,
            watch=signal.watch, not_before=signal.not_before,
        )  # fmt: skip
        TimelineEntry.objects.get_or_create(
            incident=incident, key=signal_key(signal.kind, signal.source_id),
            defaults={"at": signal.at, "kind": SIGNAL_ENTRY_KINDS[signal.kind],
                      "summary": signal.summary, "link": signal.link},
        )  # fmt: skip
    return incident, opened


SIGNAL_ENTRY_KINDS = {
    SignalKind.ALERT: EntryKind.ALERT_FIRED,
    SignalKind.VERDICT: EntryKind.VERDICT,
    SignalKind.FLAG_VERDICT: EntryKind.VERDICT,
    SignalKind.SHIFT: EntryKind.SHIFT_OPENED,
}


def signal_key(kind: str, source_id: int) -> str:
    """The timeline key of a signal's first entry, shared with the timeline sync."""
    return {
        SignalKind.ALERT: f"alert:{source_id}:fired",
        SignalKind.VERDICT: f"verdict:{source_id}:fail",
        SignalKind.FLAG_VERDICT: f"flag_verdict:{source_id}:fail",
        SignalKind.SHIFT: f"shift:{source_id}:opened",
    }[kind]


def matching_incident(signal: sources.Signal) -> Incident | None:
    window = group_window()
    candidates = list(
        Incident.objects.active()
        .filter(last_signal_at__gte=signal.at - window)
        .select_for_update()
        .order_by("detected_at", "id")
    )
    for incident in candidates:
        if signal.service in incident.services:
            return incident
    if not candidates:
        return None
    connected = sources.connected_services(signal.service, signal.at - window, signal.at)
    for incident in candidates:
        if connected & set(incident.services):
            return incident
    return None


def regression_start(signal: sources.Signal) -> datetime:
    """The first burning minute before the signal, from the rollups; else the signal's own time."""
    lookback = timedelta(minutes=settings.MONOENV_INCIDENT_LOOKBACK_MINUTES)
    series = sources.minute_series(
        signal.watch, signal.at - lookback, signal.at + timedelta(minutes=1)
    )
    start = lifecycle.regression_start(
        series,
        threshold=sources.series_threshold(signal.watch),
        detected_at=signal.at,
        reach=timedelta(minutes=settings.MONOENV_ROLLUP_LATENESS_MINUTES + 5),
        not_before=signal.not_before,
    )
    fallback = (signal.not_before or signal.at).replace(second=0, microsecond=0)
    return min(start or fallback, signal.at)


def _open(signal: sources.Signal, started: datetime, *, now: datetime) -> Incident:
    incident = Incident.objects.create(
        title=signal.title[:300], severity=signal.severity, services=[signal.service],
        environment=signal.environment, trigger_kind=signal.kind,
        trigger_summary=signal.summary, trigger_link=signal.link,
        started_at=started, detected_at=signal.at, last_signal_at=signal.at,
    )  # fmt: skip
    _status_entry(incident, f"Incident opened by Monoenv: {signal.summary}", at=signal.at)
    notify.notify(incident, "incident_opened", now=now)
    return incident


def _join(incident: Incident, signal: sources.Signal, started: datetime) -> None:
    if signal.service not in incident.services:
        incident.services = [*incident.services, signal.service]
    incident.last_signal_at = max(incident.last_signal_at, signal.at)
    incident.detected_at = min(incident.detected_at, signal.at)
    incident.started_at = min(incident.started_at, started)
    incident.severity = min(incident.severity, signal.severity)  # sev1 sorts first
    if not incident.environment:
        incident.environment = signal.environment
    incident.save()


def _status_entry(incident: Incident, summary: str, *, at: datetime, author: str = "") -> None:
    TimelineEntry.objects.create(
        incident=incident, at=at, kind=EntryKind.STATUS, summary=summary, author=author
    )


# What people do.


def open_manually(
    *, title: str, services: list[str], severity: str = Severity.SEV2, summary: str = "",
    started_at: datetime | None = None, actor: str, now: datetime,
) -> Incident:  # fmt: skip
    with transaction.atomic():
        incident = Incident.objects.create(
            title=title, services=services, severity=severity, summary=summary,
            opened_by=actor, trigger_kind="manual", trigger_summary="Declared by a person",
            started_at=min(started_at or now, now), detected_at=now, last_signal_at=now,
            acknowledged_at=now,
        )  # fmt: skip
        _status_entry(incident, "Incident declared", at=now, author=actor)
        notify.notify(incident, "incident_opened", now=now)
    return incident


def acknowledge(incident: Incident, *, now: datetime) -> None:
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now


def add_note(incident: Incident, text: str, *, actor: str, now: datetime) -> TimelineEntry:
    with transaction.atomic():
        acknowledge(incident, now=now)
        incident.save(update_fields=["acknowledged_at", "updated_at"])
        return TimelineEntry.objects.create(
            incident=incident, at=now, kind=EntryKind.NOTE, summary=text[:NOTE_LIMIT],
            author=actor,
        )  # fmt: skip


class InvalidChange(ValueError):
    pass


def update(incident: Incident, changes: dict, *, actor: str, now: datetime) -> Incident:
    """A person's PATCH: status (confirm, override, reopen), severity, title, owner, times."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        acknowledge(incident, now=now)
        for name in ("title", "owner", "severity", "summary"):
            if changes.get(name) is not None:
                setattr(incident, name, changes[name])
        if changes.get("started_at") is not None:
            if changes["started_at"] > incident.detected_at:
                raise InvalidChange("started_at cannot be after detected_at")
            incident.started_at = changes["started_at"]
        event = _apply_status(incident, changes, now=now)
        _check_times(incident)
        incident.save()
        if event:
            _status_entry(
                incident, f"Status set to {incident.status}", at=now, author=actor
            )
            notify.notify(incident, event, now=now)
    return incident


def _apply_status(incident: Incident, changes: dict, *, now: datetime) -> str | None:
    status = changes.get("status")
    mitigated = changes.get("mitigated_at")
    resolved = changes.get("resolved_at")
    if status is None or status == incident.status:
        # Overriding a time keeps the status.
        if mitigated is not None and incident.status != Status.OPEN:
            incident.mitigated_at = mitigated
        if resolved is not None and incident.status == Status.RESOLVED:
            incident.resolved_at = resolved
        return None
    if status == Status.OPEN:
        incident.status, incident.mitigated_at, incident.resolved_at = Status.OPEN, None, None
        incident.proposed_mitigated_at = incident.proposed_resolved_at = None
        incident.proposal_reason = ""
        incident.last_signal_at = max(incident.last_signal_at, now)
        return "incident_reopened"
    if status == Status.MITIGATED:
        incident.mitigated_at = mitigated or incident.proposed_mitigated_at or now
        incident.status, incident.resolved_at = Status.MITIGATED, None
        return "incident_mitigated"
    incident.resolved_at = resolved or incident.proposed_resolved_at or now
    incident.mitigated_at = (
        mitigated or incident.mitigated_at or incident.proposed_mitigated_at or incident.resolved_at
    )
    incident.status = Status.RESOLVED
    return "incident_resolved"


def _check_times(incident: Incident) -> None:
    if incident.mitigated_at and incident.mitigated_at < incident.started_at:
        raise InvalidChange("mitigated_at cannot be before started_at")
    mitigated, resolved = incident.mitigated_at, incident.resolved_at
    if resolved and mitigated and resolved < mitigated:
        raise InvalidChange("resolved_at cannot be before mitigated_at")
