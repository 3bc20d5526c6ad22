"""The demo's responder confirms what Monoenv proposes for demo incidents, over the real API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from demo.simulator import Responder
from incidents.models import ActionItem, EntryKind, Incident, Status

pytestmark = pytest.mark.django_db(transaction=True)


def _incident(services, **fields) -> Incident:
    now = timezone.now()
    return Incident.objects.create(
        title="payments failed its verdict", services=services, started_at=now - timedelta(hours=1),
        detected_at=now - timedelta(minutes=55), last_signal_at=now - timedelta(minutes=55),
        **fields,
    )  # fmt: skip


def test_it_resolves_a_demo_incident_monoenv_proposes_resolved(live_server, make_token):
    now = timezone.now()
    resolved_at = now - timedelta(minutes=20)
    demo = _incident(["demo-payments"], proposed_mitigated_at=now - timedelta(minutes=30),
                     proposed_resolved_at=resolved_at)  # fmt: skip
    lines = []
    Responder(api=live_server.url, token=make_token("read", "incident"), log=lines.append).act()
    demo.refresh_from_db()
    assert (demo.status, demo.resolved_at, demo.owner) == (
        Status.RESOLVED, resolved_at, "demo on-call"
    )  # fmt: skip
    assert demo.timeline.filter(kind=EntryKind.NOTE).count() == 1
    assert ActionItem.objects.get().incident == demo
    assert lines == [f"responder: resolved incident #{demo.pk} as Monoenv proposed"]


def test_it_confirms_mitigated_and_leaves_other_services_incidents_alone(live_server, make_token):
    mitigated_at = timezone.now() - timedelta(minutes=30)
    demo = _incident(["demo-payments"], proposed_mitigated_at=mitigated_at)
    mine = _incident(["checkout"], proposed_resolved_at=timezone.now() - timedelta(minutes=20))
    Responder(api=live_server.url, token=make_token("read", "incident"), log=print).act()
    demo.refresh_from_db()
    mine.refresh_from_db()
    assert (demo.status, demo.mitigated_at) == (Status.MITIGATED, mitigated_at)
    assert mine.status == Status.OPEN


def test_without_the_incident_scope_it_only_logs(live_server, make_token):
    _incident(["demo-payments"], proposed_resolved_at=timezone.now() - timedelta(minutes=20))
    lines = []
    Responder(api=live_server.url, token=make_token("read"), log=lines.append).act()
    assert Incident.objects.get().status == Status.OPEN
    assert lines and lines[0].startswith("the demo responder's API call failed")
