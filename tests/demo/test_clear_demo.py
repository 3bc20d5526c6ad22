"""`manage.py clear_demo`: every demo service's rows go, in every app; nothing else does."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from deployments.models import Deployment, RouteShift, Suspect
from incidents.models import Incident, IncidentSignal, TimelineEntry
from slo.models import SLO, Alert, SLOMinute
from telemetry import rollups
from telemetry.models import PendingMinute, RollupMinute, ServiceDay, Span
from tests.slo.factories import add_minutes, make_slo, store_spans

pytestmark = pytest.mark.django_db

DEMO, REAL = "demo-checkout", "shop"


def _everything_about(service: str, minute) -> None:
    store_spans(minute, 10, errors=2, service=service)
    rollups.rollup_pending()
    store_spans(minute + timedelta(minutes=1), 5, service=service)  # still pending
    slo = make_slo(name=f"{service}-availability", service=service)
    add_minutes(slo, minute, 2, good=8, total=10)
    Alert.objects.create(
        slo=slo, severity="page", long_window=timedelta(hours=1),
        short_window=timedelta(minutes=5), threshold=14.4, long_burn_rate=20,
        short_burn_rate=20, budget_consumed_pct=1, fired_at=minute, last_evaluated_at=minute,
    )  # fmt: skip
    deploy = Deployment.objects.create(service=service, version="v2", started_at=minute)
    shift = RouteShift.objects.create(
        service=service, route="/api/orders", metric="error_rate", baseline_value=0.01,
        current_value=0.2, baseline_n=100, current_n=100, p_value=0.001, adjusted_p_value=0.002,
        window_start=minute, window_end=minute + timedelta(minutes=10),
    )  # fmt: skip
    Suspect.objects.create(route_shift=shift, suspect=deploy, rank=1, score=1, evidence="")
    # A suspect row names the alert by id, so no foreign key cascades it.
    Suspect.objects.create(alert_id=slo.alerts.get().pk, suspect_kind="flag", suspect_change_id=1,
                           rank=1, score=1, evidence="")  # fmt: skip
    incident = _incident([service], minute)
    _signal(incident, service, source_id=deploy.pk, at=minute)


def _incident(services: list[str], at) -> Incident:
    incident = Incident.objects.create(
        title=f"{', '.join(services)} regressed", services=services, started_at=at,
        detected_at=at, last_signal_at=at,
    )  # fmt: skip
    TimelineEntry.objects.create(incident=incident, at=at, kind="verdict", summary="opened")
    return incident


def _signal(incident: Incident, service: str, *, source_id: int, at) -> IncidentSignal:
    return IncidentSignal.objects.create(
        incident=incident, kind="deploy", source_id=source_id, service=service, at=at,
        summary=f"{service} failed its verdict",
    )  # fmt: skip


def _rows(service: str) -> dict:
    return {
        "spans": Span.objects.filter(service=service).count(),
        "rollups": RollupMinute.objects.filter(service=service).count(),
        "pending": PendingMinute.objects.filter(service=service).count(),
        "days": ServiceDay.objects.filter(service=service).count(),
        "slos": SLO.objects.filter(service=service).count(),
        "slo minutes": SLOMinute.objects.filter(slo__service=service).count(),
        "alerts": Alert.objects.filter(slo__service=service).count(),
        "deploys": Deployment.objects.filter(service=service).count(),
        "shifts": RouteShift.objects.filter(service=service).count(),
        "suspects": Suspect.objects.filter(suspect__service=service).count(),
        "suspects of alerts": Suspect.objects.filter(
            alert_id__in=Alert.objects.filter(slo__service=service).values("id")
        ).count(),
        "incidents": Incident.objects.filter(services__contains=[service]).count(),
        "signals": IncidentSignal.objects.filter(service=service).count(),
    }


def test_it_removes_every_demo_services_data_and_keeps_the_rest():
    minute = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    for service in (DEMO, "demo-from-an-older-demo", REAL):
        _everything_about(service, minute)
    before = _rows(REAL)
    assert all(before.values()), before  # the seeding left a row of each kind

    out = StringIO()
    call_command("clear_demo", stdout=out)

    assert _rows(DEMO) == dict.fromkeys(before, 0)
    assert _rows("demo-from-an-older-demo") == dict.fromkeys(before, 0)
    assert _rows(REAL) == before
    alerts = Alert.objects.values("id")
    assert not Suspect.objects.exclude(alert_id=None).exclude(alert_id__in=alerts).exists()
    assert out.getvalue().startswith(
        "Cleared the demo (demo-checkout, demo-from-an-older-demo, demo-frontend, "
        "demo-inventory, demo-payments): 2 incidents, 0 flag changes, 4 deploys and route "
        "shifts, 2 SLOs, "
    )


def test_it_does_nothing_on_a_database_without_a_demo():
    call_command("clear_demo", stdout=StringIO())

    assert not SLO.objects.exists()


def test_an_incident_shared_with_a_real_service_stays_without_the_demo():
    at = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    shared = _incident([DEMO, REAL], at)
    _signal(shared, DEMO, source_id=1, at=at)
    real_signal = _signal(shared, REAL, source_id=2, at=at)

    call_command("clear_demo", stdout=StringIO())

    shared.refresh_from_db()
    assert shared.services == [REAL]
    assert list(shared.signals.all()) == [real_signal]
    assert shared.timeline.count() == 1
