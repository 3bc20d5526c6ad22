"""Incidents open by themselves from signals, and signals group into one incident."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Verdict
from incidents import jobs
from incidents.models import EntryKind, Incident, IncidentSignal, Severity, Status
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)


def test_a_page_alert_opens_an_incident_naming_its_trigger_and_suspects(t0):
    slo = f.make_slo()
    bad = f.deploy("checkout", "2.0", t0 - 5 * M)
    alert = f.page_alert(slo, t0)
    f.suspect_of_alert(alert, bad)
    report = jobs.run_once(now=t0 + M)
    incident = Incident.objects.get()
    assert report.opened == [incident.pk]
    assert incident.trigger_kind == "alert" and "checkout-availability" in incident.trigger_summary
    assert incident.services == ["checkout"] and incident.status == Status.OPEN
    assert incident.severity == Severity.SEV2
    assert incident.top_suspect == bad
    assert [s["version"] for s in incident.suspects] == ["2.0"]


def test_ticket_alerts_do_not_open_incidents(t0):
    alert = f.page_alert(f.make_slo(), t0)
    alert.severity = "ticket"
    alert.save()
    jobs.run_once(now=t0 + M)
    assert not Incident.objects.exists()


def test_polling_twice_records_each_signal_once(t0):
    f.page_alert(f.make_slo(), t0)
    jobs.run_once(now=t0 + M)
    again = jobs.run_once(now=t0 + 2 * M)
    assert again.opened == [] and again.joined == []
    assert IncidentSignal.objects.count() == 1 and Incident.objects.count() == 1


def test_signals_on_the_same_service_within_the_window_join_the_open_incident(t0):
    f.page_alert(f.make_slo(), t0)
    f.shift("checkout", "GET /pay", t0 + 10 * M)
    f.failed_deploy("checkout", "2.1", t0 + 5 * M, evaluated_at=t0 + 12 * M)
    jobs.run_once(now=t0 + 13 * M)
    incident = Incident.objects.get()
    assert sorted(s.kind for s in incident.signals.all()) == ["alert", "shift", "verdict"]
    assert incident.last_signal_at == t0 + 12 * M
    # The failed deploy is its own first suspect.
    assert incident.suspects[0]["version"] == "2.1"


def test_a_signal_on_a_service_connected_in_the_traces_joins(t0):
    f.store([row for i in range(1, 6) for row in f.call("checkout", "payments", t0 + 8 * M, i)])
    f.page_alert(f.make_slo(), t0)
    f.failed_deploy("payments", "7.0", t0 + 2 * M, evaluated_at=t0 + 10 * M)
    f.failed_deploy("search", "3.0", t0 + 2 * M, evaluated_at=t0 + 11 * M)
    jobs.run_once(now=t0 + 12 * M)
    checkout = Incident.objects.get(services__contains=["checkout"])
    assert checkout.services == ["checkout", "payments"]
    search = Incident.objects.get(services__contains=["search"])
    assert search.pk != checkout.pk and search.severity == Severity.SEV3


def test_a_signal_after_the_window_opens_a_new_incident(t0, settings):
    settings.MONOENV_INCIDENT_GROUP_MINUTES = 30
    slo = f.make_slo()
    f.page_alert(slo, t0, resolved_at=t0 + 5 * M)
    jobs.run_once(now=t0 + M)
    f.page_alert(slo, t0 + 31 * M)
    jobs.run_once(now=t0 + 32 * M)
    assert Incident.objects.count() == 2


def test_a_resolved_incident_takes_no_new_signals(t0):
    slo = f.make_slo()
    f.page_alert(slo, t0, resolved_at=t0 + 2 * M)
    jobs.run_once(now=t0 + M)
    Incident.objects.update(status=Status.RESOLVED, resolved_at=t0 + 3 * M)
    f.page_alert(slo, t0 + 4 * M)
    jobs.run_once(now=t0 + 5 * M)
    assert Incident.objects.count() == 2


def test_the_timeline_writes_deploys_rollbacks_verdicts_and_alerts_once(t0):
    slo = f.make_slo()
    bad = f.failed_deploy("checkout", "2.0", t0 - 4 * M, evaluated_at=t0 + 20 * M)
    f.deploy("checkout", "1.9", t0 + 10 * M, rollback_of=bad, previous_version="2.0")
    f.page_alert(slo, t0, resolved_at=t0 + 15 * M)
    jobs.run_once(now=t0 + 21 * M)
    jobs.run_once(now=t0 + 22 * M)
    incident = Incident.objects.get()
    kinds = [entry.kind for entry in incident.timeline.all()]
    assert kinds.count(EntryKind.DEPLOY) == 1 and kinds.count(EntryKind.ROLLBACK) == 1
    assert kinds.count(EntryKind.ALERT_FIRED) == 1 and kinds.count(EntryKind.ALERT_RESOLVED) == 1
    assert kinds.count(EntryKind.VERDICT) == 1
    assert EntryKind.NOTIFICATION in kinds and EntryKind.STATUS in kinds
    times = [entry.at for entry in incident.timeline.all()]
    assert times == sorted(times)
    assert Verdict.FAIL in next(e.summary for e in incident.timeline.all() if e.kind == "verdict")


def test_the_management_command_runs_one_pass(t0):
    from io import StringIO

    from django.core.management import call_command

    f.page_alert(f.make_slo(), t0)
    out = StringIO()
    call_command("incidents_poll", "--rebuild-outcomes", stdout=out)
    assert out.getvalue().startswith("1 incident(s) opened, 0 signal(s) joined, 1 refreshed")
    assert Incident.objects.count() == 1


def test_a_poll_finding_another_one_running_returns_at_once(t0):
    from django.db import connections

    f.page_alert(f.make_slo(), t0)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [jobs.POLL_LOCK])  # a poll running
        report = jobs.poll(now=t0 + M)
        assert report.skipped and not Incident.objects.exists()
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [jobs.POLL_LOCK])
    finally:
        other.close()
    assert not jobs.poll(now=t0 + M).skipped and Incident.objects.count() == 1


def test_the_refresh_tasks_run_as_functions(t0):
    from incidents import tasks
    from incidents.models import ChangeOutcome

    f.page_alert(f.make_slo(), t0)
    f.deploy("checkout", "2.0", timezone.now() - 5 * M)
    jobs.poll(now=t0 + M)
    incident = Incident.objects.get()
    tasks.refresh_incident(incident.pk)
    assert Incident.objects.get().refreshed_at is not None
    assert tasks.refresh_outcomes() == 1 and ChangeOutcome.objects.count() == 1


def test_opening_and_resolving_go_through_the_outbox_escaped_for_slack(t0):
    from incidents import operations
    from notifications.models import Delivery, WebhookKind, WebhookTarget

    WebhookTarget.objects.create(name="ops", url="http://127.0.0.1:9/", kind=WebhookKind.SLACK)
    WebhookTarget.objects.create(name="tickets", url="http://127.0.0.1:9/", severities=["ticket"])
    f.page_alert(f.make_slo(service="<!channel> checkout"), t0)
    jobs.run_once(now=t0 + M)
    incident = Incident.objects.get()
    operations.update(incident, {"status": "resolved"}, actor="ana", now=t0 + 2 * M)
    deliveries = list(Delivery.objects.order_by("pk"))
    assert [d.event for d in deliveries] == ["incident_opened", "incident_resolved"]
    assert {d.subject for d in deliveries} == {f"incidents.incident:{incident.pk}"}
    text = deliveries[0].payload["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt; checkout" in text
    summaries = [e.summary for e in incident.timeline.filter(kind=EntryKind.NOTIFICATION)]
    assert summaries[0] == "Notification queued to 1 target(s): incident opened"
