"""The incident poll: find new signals, open or join incidents, and list what to refresh.

jobs returns the work and tasks enqueue it (incidents/tasks.py), as in slo.
One poll runs at a time (a transaction-level advisory lock); a second worker
that finds it taken returns at once. Running the poll twice does no harm:
each signal joins once (IncidentSignal is unique on its source).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from incidents import delivery, operations, refresh, sources
from incidents.models import Incident, IncidentSignal, Status

# pg_advisory_xact_lock key: "incident poll".
POLL_LOCK = 0x1C1DE7


@dataclass
class PollReport:
    opened: list[int] = field(default_factory=list)
    joined: list[int] = field(default_factory=list)
    to_refresh: list[int] = field(default_factory=list)
    outcomes: int = 0
    skipped: bool = False


def poll(*, now: datetime | None = None) -> PollReport:
    now = now or timezone.now()
    report = PollReport()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [POLL_LOCK])
            if not cursor.fetchone()[0]:
                report.skipped = True
                return report
        _record_new_signals(now=now, report=report)
    report.to_refresh = incidents_to_refresh(now=now)
    return report


def _record_new_signals(*, now: datetime, report: PollReport) -> None:
    since = now - timedelta(minutes=settings.MONOENV_INCIDENT_LOOKBACK_MINUTES)
    known = set(IncidentSignal.objects.filter(at__gte=since - timedelta(days=1)).values_list(
        "kind", "source_id"
    ))  # fmt: skip
    for signal in sources.new_signals(since=since, known=known):
        try:
            with transaction.atomic():
                incident, opened = operations.record_signal(signal, now=now)
        except IntegrityError:
            continue  # recorded meanwhile by a poll that did not hold the lock
        (report.opened if opened else report.joined).append(incident.pk)


def incidents_to_refresh(*, now: datetime) -> list[int]:
    """Active incidents, and those resolved in the last hour (their impact is settled once more)."""
    recent = now - timedelta(hours=1)
    active = Incident.objects.active().values_list("pk", flat=True)
    settled = Incident.objects.filter(
        status=Status.RESOLVED, resolved_at__gte=recent
    ).values_list("pk", flat=True)
    return sorted({*active, *settled})


def refresh_incident(incident_id: int, *, now: datetime | None = None) -> None:
    refresh.refresh(incident_id, now=now or timezone.now())


def refresh_outcomes(*, now: datetime | None = None) -> int:
    return delivery.refresh_recent(now=now or timezone.now())


def run_once(*, now: datetime | None = None) -> PollReport:
    """One synchronous pass (manage.py incidents_poll, and tests)."""
    now = now or timezone.now()
    report = poll(now=now)
    for incident_id in report.to_refresh:
        refresh_incident(incident_id, now=now)
    report.outcomes = refresh_outcomes(now=now)
    return report
