"""Each lifecycle time, from data built for it: started, detected, acknowledged, mitigated..."""

from datetime import timedelta

import pytest

from incidents import jobs, operations
from incidents.models import EntryKind, Incident, Status
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)


@pytest.fixture
def outage(t0):
    """checkout burns 20% bad minutes (20× its 99% budget) from t0 for 30 minutes.

    A bad deploy at t0; the page fires at t0+8; the rollback at t0+30 ends the
    burn; the alert resolves at t0+40; traffic is good until t0+110.
    """
    slo = f.make_slo()
    f.slo_minutes(slo, t0 - 60 * M, 60, bad=0)
    f.slo_minutes(slo, t0, 30, bad=20)
    f.slo_minutes(slo, t0 + 30 * M, 80, bad=0)
    bad = f.deploy("checkout", "2.0", t0)
    rollback = f.deploy("checkout", "1.9", t0 + 30 * M, rollback_of=bad, previous_version="2.0")
    alert = f.page_alert(slo, t0 + 8 * M, resolved_at=t0 + 40 * M)
    f.suspect_of_alert(alert, bad)
    return {"slo": slo, "bad": bad, "rollback": rollback, "alert": alert}


def test_started_at_is_the_first_burning_minute_and_detected_at_the_alert(outage, t0):
    jobs.run_once(now=t0 + 9 * M)
    incident = Incident.objects.get()
    assert incident.started_at == t0
    assert incident.detected_at == t0 + 8 * M
    assert incident.acknowledged_at is None


def test_a_fail_verdict_starts_no_earlier_than_its_deploy(t0):
    # Rollups burn from t0-10 (another cause), the deploy went out at t0+3.
    f.rollups("checkout", t0 - 70 * M, 60, errors=0)
    f.rollups("checkout", t0 - 10 * M, 30, errors=30)
    f.failed_deploy("checkout", "2.0", t0 + 3 * M, evaluated_at=t0 + 15 * M)
    jobs.run_once(now=t0 + 16 * M)
    assert Incident.objects.get().started_at == t0 + 3 * M


def test_a_route_shift_starts_at_its_routes_first_bad_minute(t0):
    f.rollups("checkout", t0 - 60 * M, 60, errors=1)
    f.rollups("checkout", t0, 12, errors=20)
    f.shift("checkout", "GET /pay", t0 + 11 * M)
    jobs.run_once(now=t0 + 12 * M)
    assert Incident.objects.get().started_at == t0


def test_monoenv_proposes_mitigated_at_the_rollback_and_resolved_at_the_alerts_end(outage, t0):
    jobs.run_once(now=t0 + 9 * M)
    jobs.run_once(now=t0 + 60 * M)
    incident = Incident.objects.get()
    assert incident.status == Status.OPEN  # only proposed
    assert incident.proposed_mitigated_at == t0 + 30 * M
    assert "rollback of checkout 1.9" in incident.proposal_reason
    assert incident.proposed_resolved_at == t0 + 40 * M
    proposals = incident.timeline.filter(kind=EntryKind.PROPOSAL)
    assert proposals.count() == 2


def test_no_proposal_while_the_burn_goes_on(outage, t0):
    jobs.run_once(now=t0 + 9 * M)
    jobs.run_once(now=t0 + 25 * M)
    incident = Incident.objects.get()
    assert incident.proposed_mitigated_at is None and incident.proposed_resolved_at is None


def test_a_person_confirms_and_the_times_follow_the_proposals(outage, t0):
    jobs.run_once(now=t0 + 9 * M)
    incident = Incident.objects.get()
    operations.add_note(incident, "Looking at checkout", actor="ana", now=t0 + 12 * M)
    jobs.run_once(now=t0 + 60 * M)
    incident = operations.update(
        Incident.objects.get(), {"status": "mitigated"}, actor="ana", now=t0 + 61 * M
    )
    assert incident.mitigated_at == t0 + 30 * M
    incident = operations.update(incident, {"status": "resolved"}, actor="ana", now=t0 + 62 * M)
    assert incident.acknowledged_at == t0 + 12 * M
    assert incident.resolved_at == t0 + 40 * M
    times = incident.times(now=t0 + 90 * M)
    assert times == {
        "duration_seconds": 40 * 60.0,
        "time_to_detect_seconds": 8 * 60.0,
        "time_to_mitigate_seconds": 30 * 60.0,
        "time_to_resolve_seconds": 40 * 60.0,
    }


def test_a_person_overrides_a_time_and_reopens(outage, t0):
    jobs.run_once(now=t0 + 9 * M)
    incident = Incident.objects.get()
    incident = operations.update(
        incident, {"status": "mitigated", "mitigated_at": t0 + 20 * M}, actor="ana",
        now=t0 + 21 * M,
    )  # fmt: skip
    assert incident.mitigated_at == t0 + 20 * M and incident.acknowledged_at == t0 + 21 * M
    incident = operations.update(incident, {"status": "open"}, actor="ana", now=t0 + 22 * M)
    assert incident.status == Status.OPEN and incident.mitigated_at is None
    statuses = [e.summary for e in incident.timeline.filter(kind=EntryKind.STATUS)]
    assert statuses[-2:] == ["Status set to mitigated", "Status set to open"]
    notified = incident.timeline.filter(kind=EntryKind.NOTIFICATION).count()
    assert notified == 3  # opened, mitigated, reopened


def test_times_that_contradict_each_other_are_refused(outage, t0):
    jobs.run_once(now=t0 + 9 * M)
    with pytest.raises(operations.InvalidChange):
        operations.update(Incident.objects.get(), {"status": "mitigated",
                          "mitigated_at": t0 - 60 * M}, actor="ana", now=t0 + 10 * M)  # fmt: skip


def test_a_proposal_is_withdrawn_when_the_burn_comes_back(t0):
    slo = f.make_slo()
    f.slo_minutes(slo, t0 - 30 * M, 30, bad=0)
    f.slo_minutes(slo, t0, 10, bad=20)
    f.slo_minutes(slo, t0 + 10 * M, 30, bad=0)
    f.slo_minutes(slo, t0 + 40 * M, 10, bad=20)  # it comes back
    f.page_alert(slo, t0 + 5 * M)
    jobs.run_once(now=t0 + 6 * M)
    jobs.run_once(now=t0 + 35 * M)
    assert Incident.objects.get().proposed_mitigated_at == t0 + 14 * M  # the calm, no change
    jobs.run_once(now=t0 + 45 * M)
    incident = Incident.objects.get()
    assert incident.proposed_mitigated_at is None and incident.proposal_reason == ""
    assert incident.timeline.filter(summary__startswith="Monoenv withdraws").count() == 1
