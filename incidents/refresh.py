"""Keep an incident current: its signals' state, timeline, proposals, suspects and impact.

Run by the poll for every active incident, and once more when one resolves.
Idempotent: timeline entries Monoenv writes carry a key and are written once;
everything else is recomputed from what the owning apps hold.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from incidents import impact, lifecycle, postmortem, sources
from incidents.models import EntryKind, Incident, Status, TimelineEntry

# Deploys shortly before the regression may be its cause: they belong on the timeline.
CHANGES_BEFORE = timedelta(minutes=30)
AFTER_RESOLVED = timedelta(minutes=10)


def refresh(incident_id: int, *, now: datetime) -> Incident | None:
    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None:
        return None
    signals = list(incident.signals.all())
    for signal in signals:
        closed = sources.closed_at(signal.kind, signal.source_id)
        if closed != signal.closed_at:
            signal.closed_at = closed
            signal.save(update_fields=["closed_at"])
    with transaction.atomic():
        incident.suspects = sources.suspects_of(signals)
        top = incident.suspects[0] if incident.suspects else {}
        incident.top_suspect_id = top.get("deployment_id")
        incident.top_flag_change_id = top.get("flag_change_id")
        sync_timeline(incident, now=now)
        propose(incident, signals, now=now)
        incident.impact = impact.compute(incident, now=now)
        incident.refreshed_at = now
        incident.save()
        postmortem.refresh_draft(incident, now=now)
    return incident


def timeline_range(incident: Incident, *, now: datetime) -> tuple[datetime, datetime]:
    end = incident.resolved_at + AFTER_RESOLVED if incident.resolved_at else now
    return incident.started_at - CHANGES_BEFORE, min(end, now)


def sync_timeline(incident: Incident, *, now: datetime) -> None:
    start, end = timeline_range(incident, now=now)
    deploys = [s["deployment_id"] for s in incident.suspects if s.get("deployment_id")]
    flags = [s["flag_change_id"] for s in incident.suspects if s.get("flag_change_id")]
    entries = [
        *_deploy_entries(incident.services, start, end, also=deploys),
        *_flag_entries(incident.services, start, end, also=flags),
        *_alert_entries(incident.services, start, end),
        *_shift_entries(incident.services, start, end),
    ]
    TimelineEntry.objects.bulk_create(
        [TimelineEntry(incident=incident, **entry) for entry in entries if entry["at"] < end],
        ignore_conflicts=True,
    )


def _deploy_entries(services, start, end, *, also: list[int]) -> list[dict]:
    """Deploys of the incident's services, and its suspects, which may be of other services."""
    deploys = sources.deploys_of(services, start, end, also=also)
    entries = []
    for deploy in deploys:
        link = sources.url(f"/deploys/{deploy.pk}/")
        if deploy.rollback_of_id:
            summary = (
                f"Rollback of {deploy.service} to {deploy.version} "
                f"(from {deploy.previous_version or 'the previous version'})"
            )
            kind = EntryKind.ROLLBACK
        else:
            was = f" (from {deploy.previous_version})" if deploy.previous_version else ""
            summary, kind = f"Deploy of {deploy.service} {deploy.version}{was}", EntryKind.DEPLOY
        entries.append({"at": deploy.started_at, "kind": kind, "summary": summary, "link": link,
                        "key": f"deploy:{deploy.pk}"})  # fmt: skip
    for record in sources.verdict_records_of(deploys):
        deploy = record.deployment
        entries.append({
            "at": record.created_at, "kind": EntryKind.VERDICT,
            "summary": f"Verdict {record.verdict} for {deploy.service} {deploy.version} "
                       f"at {record.checkpoint} min: {sources.first_line(record.reason)}",
            "link": sources.url(f"/deploys/{deploy.pk}/"),
            "key": f"verdict:{deploy.pk}:{record.checkpoint}",
        })  # fmt: skip
    return entries


def _flag_entries(services, start, end, *, also: list[int]) -> list[dict]:
    """Changes of flags the incident's services evaluate, its flag suspects, and their verdicts."""
    changes = sources.flag_changes_of(services, start, end, also=also)
    entries = []
    for change in changes:
        entries.append({"at": change.at, "kind": EntryKind.FLAG, "summary": _flag_summary(change),
                        "link": change.link(), "key": f"flag:{change.pk}"})  # fmt: skip
    for record in sources.flag_verdict_records_of(changes):
        change = record.change
        entries.append({
            "at": record.created_at, "kind": EntryKind.VERDICT,
            "summary": f"Verdict {record.verdict} for flag {change.flag} at {record.minute} min: "
                       f"{sources.first_line(record.reason)}",
            "link": change.link(), "key": f"flag_verdict:{change.pk}:{record.minute}",
        })  # fmt: skip
    return entries


def _flag_summary(change) -> str:
    rollout = ", ".join(f"{variant} {percent:g}%" for variant, percent in change.rollout.items())
    how = f" to {rollout}" if rollout else ""
    source = " (detected from the variant shares)" if change.source == "detected" else ""
    return f"Flag change of {change.flag}{how}{source}"


def _alert_entries(services, start, end) -> list[dict]:
    entries = []
    for alert in sources.alerts_of(services, start, end):
        link = sources.url(f"/slos/{alert.slo_id}/")
        entries.append({"at": alert.fired_at, "kind": EntryKind.ALERT_FIRED,
                        "summary": sources.alert_summary(alert), "link": link,
                        "key": f"alert:{alert.pk}:fired"})  # fmt: skip
        if alert.resolved_at:
            entries.append({"at": alert.resolved_at, "kind": EntryKind.ALERT_RESOLVED,
                            "summary": f"Alert on SLO {alert.slo.name} ({alert.severity}, "
                                       f"{alert.windows}) resolved",
                            "link": link, "key": f"alert:{alert.pk}:resolved"})  # fmt: skip
    return entries


def _shift_entries(services, start, end) -> list[dict]:
    entries = []
    for shift in sources.shifts_of(services, start, end):
        link = sources.url(f"/services/{shift.service}/")
        entries.append({"at": shift.detected_at, "kind": EntryKind.SHIFT_OPENED,
                        "summary": f"Route shift: {sources.shift_summary(shift)}",
                        "link": link, "key": f"shift:{shift.pk}:opened"})  # fmt: skip
        if shift.resolved_at:
            entries.append({"at": shift.resolved_at, "kind": EntryKind.SHIFT_CLOSED,
                            "summary": f"Route shift closed: {shift.service} {shift.route} "
                                       f"{shift.metric} back to its baseline",
                            "link": link, "key": f"shift:{shift.pk}:closed"})  # fmt: skip
    return entries


def propose(incident: Incident, signals, *, now: datetime) -> None:
    """Propose mitigated and resolved from the data; only a person changes the status."""
    if incident.status == Status.RESOLVED or not signals:
        return
    sustain = timedelta(minutes=settings.MONOENV_INCIDENT_SUSTAIN_MINUTES)
    mitigated = _proposed_mitigation(incident, signals, sustain=sustain, now=now)
    resolved = lifecycle.resolution([s.closed_at for s in signals], sustain=sustain, now=now)
    if mitigated and mitigated[0] != incident.proposed_mitigated_at:
        incident.proposed_mitigated_at, incident.proposal_reason = mitigated
        _proposal_entry(incident, "mitigated", mitigated[0], mitigated[1])
    if resolved is None and mitigated is None and incident.proposed_mitigated_at:
        # The burn came back: what was proposed no longer holds.
        _proposal_entry(incident, "withdrawn", now, "the burn rate rose above 1 again")
        incident.proposed_mitigated_at, incident.proposal_reason = None, ""
    if resolved is None:
        incident.proposed_resolved_at = None
    if resolved and resolved != incident.proposed_resolved_at:
        incident.proposed_resolved_at = resolved
        if incident.proposed_mitigated_at is None or incident.proposed_mitigated_at > resolved:
            incident.proposed_mitigated_at = resolved
        reason = "every alert resolved and every shift closed"
        _proposal_entry(incident, "resolved", resolved, f"{reason}, and stayed so")


def _proposed_mitigation(incident, signals, *, sustain, now) -> tuple[datetime, str] | None:
    changes = [
        *sources.flag_changes_of(incident.services, incident.started_at, now),
        *sources.deploys_of(incident.services, incident.started_at, now),
    ]
    change_times = {_changed_at(change): change for change in changes}
    found = []
    for signal in signals:
        series = sources.minute_series(signal.watch, incident.started_at, now)
        result = lifecycle.mitigation(
            series, threshold=sources.series_threshold(signal.watch),
            started_at=incident.started_at, changes=list(change_times), sustain=sustain, now=now,
        )  # fmt: skip
        if result is None:
            return None
        found.append(result)
    latest = max(found, key=lambda m: m.at)
    calm = f"the burn rate fell below 1 at {latest.calm_from:%H:%M} UTC and stayed there"
    if latest.change_at is None:
        return latest.at, calm
    change = change_times[latest.change_at]
    if isinstance(change, sources.FlagChange):
        return latest.at, f"after the change of flag {change.flag}, {calm}"
    what = "rollback" if change.rollback_of_id else "deploy"
    return latest.at, f"after the {what} of {change.service} {change.version}, {calm}"


def _changed_at(change) -> datetime:
    return change.at if isinstance(change, sources.FlagChange) else change.deployed_at


def _proposal_entry(incident: Incident, status: str, at: datetime, reason: str) -> None:
    summary = (
        f"Monoenv withdraws its proposal: {reason}" if status == "withdrawn"
        else f"Monoenv proposes {status} at {at:%H:%M} UTC: {reason}"
    )  # fmt: skip
    TimelineEntry.objects.get_or_create(
        incident=incident, key=f"proposal:{status}:{at.isoformat()}",
        defaults={"at": at, "kind": EntryKind.PROPOSAL, "summary": summary},
    )  # fmt: skip
