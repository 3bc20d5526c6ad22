"""A failed flag rollout opens or joins an incident; flag changes are on its timeline.

checkout's GET /pay fails 1% of requests, then 20% from t0, when new-pay went
to 10%, until new-pay is turned off at t0+10m; its rollout failed its verdict
at t0+6m. Minutes are rollups built for the purpose.
"""

from datetime import timedelta

import pytest

from deployments.models import Suspect
from flags.models import FlagChange, FlagFinding, FlagVerdictRecord
from incidents import jobs
from incidents.models import EntryKind, Incident, IncidentSignal, SignalKind
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)
REASON = "checkout, new-pay=on: error rate rose from 1.0% to 20% on GET /pay"


def failed_rollout(at, *, evaluated_at, flag="new-pay", service="checkout") -> FlagChange:
    change = FlagChange.objects.create(
        flag=flag, at=at, services=[service], control="off", rollout={"on": 10, "off": 90},
        verdict="fail", verdict_reason=REASON, evaluated_at=evaluated_at,
    )  # fmt: skip
    record = FlagVerdictRecord.objects.create(
        change=change, minute=5, verdict="fail", reason=REASON, control="off",
        window_start=at, window_end=at + 5 * M, created_at=evaluated_at,
    )  # fmt: skip
    FlagFinding.objects.create(
        change=change, record=record, service=service, variant="on", metric="error_rate",
        route="GET /pay", baseline_value=0.01, candidate_value=0.2, baseline_n=2700,
        candidate_n=300, significant=True,
    )  # fmt: skip
    return change


@pytest.fixture
def burning(t0):
    f.rollups("checkout", t0 - 60 * M, 60, errors=1)
    f.rollups("checkout", t0, 10, errors=20)
    f.rollups("checkout", t0 + 10 * M, 40, errors=1)


def test_a_failed_rollout_opens_an_incident_naming_the_flag_first(t0, burning):
    change = failed_rollout(t0, evaluated_at=t0 + 6 * M)
    report = jobs.run_once(now=t0 + 7 * M)
    incident = Incident.objects.get()
    assert report.opened == [incident.pk]
    assert incident.trigger_kind == SignalKind.FLAG_VERDICT
    assert "new-pay" in incident.title and REASON in incident.trigger_summary
    assert incident.services == ["checkout"]
    # From the rollups: GET /pay burned from t0, no earlier than the change.
    assert incident.started_at == t0 and incident.detected_at == t0 + 6 * M
    [top] = incident.suspects
    assert top["kind"] == "flag" and top["flag_change_id"] == change.pk
    assert incident.top_flag_change == change and incident.top_suspect is None


def test_the_timeline_has_the_flag_change_and_its_verdict_once(t0, burning):
    change = failed_rollout(t0, evaluated_at=t0 + 6 * M)
    jobs.run_once(now=t0 + 7 * M)
    jobs.run_once(now=t0 + 8 * M)
    timeline = list(Incident.objects.get().timeline.all())
    flags = [e for e in timeline if e.kind == EntryKind.FLAG]
    assert [(e.at, e.summary) for e in flags] == [(t0, "Flag change of new-pay to on 10%, off 90%")]
    verdicts = [e.summary for e in timeline if e.kind == EntryKind.VERDICT]
    # The signal's own entry, and the verdict record's.
    assert verdicts == [f"Rollout of flag new-pay failed its verdict: {REASON}",
                        f"Verdict fail for flag new-pay at 5 min: {REASON}"]  # fmt: skip
    assert all(e.link == change.link() for e in flags)


def test_a_failed_rollout_joins_the_alert_incident_of_its_service(t0, burning):
    slo = f.make_slo(service="checkout")
    f.page_alert(slo, t0 + 3 * M)
    failed_rollout(t0, evaluated_at=t0 + 6 * M)
    jobs.run_once(now=t0 + 7 * M)
    incident = Incident.objects.get()
    assert sorted(incident.signals.values_list("kind", flat=True)) == ["alert", "flag_verdict"]


def test_turning_the_flag_off_is_proposed_as_the_mitigation(t0, burning):
    change = failed_rollout(t0, evaluated_at=t0 + 6 * M)
    jobs.run_once(now=t0 + 7 * M)
    revert = FlagChange.objects.create(flag="new-pay", at=t0 + 10 * M, services=["checkout"],
                                       rollout={"off": 100}, verdict="pass")  # fmt: skip
    # The 5-minute rolling burn ends at t0+14m; 15 calm minutes later Monoenv proposes.
    jobs.run_once(now=t0 + 30 * M)
    incident = Incident.objects.get()
    assert incident.proposed_mitigated_at == revert.at
    assert incident.proposal_reason.startswith("after the change of flag new-pay, the burn rate")
    # The failed change's signal closed when the next, passing, change of the flag came.
    assert IncidentSignal.objects.get(source_id=change.pk).closed_at == revert.at
    assert incident.proposed_resolved_at == revert.at


def test_a_flag_suspect_of_an_alert_is_the_incidents_top_suspect(t0, burning):
    slo = f.make_slo(service="checkout")
    alert = f.page_alert(slo, t0 + 3 * M)
    change = FlagChange.objects.create(flag="new-pay", at=t0, services=["checkout"])
    deploy = f.deploy("checkout", "2.0", t0 - 30 * M)
    evidence = ("95% of the extra errors on GET /pay are in requests with new-pay=on; "
                "new-pay changed as the regression began.")  # fmt: skip
    Suspect.objects.create(alert_id=alert.pk, suspect_kind="flag", suspect_change_id=change.pk,
                           suspect_label="flag new-pay", suspect_link=change.link(),
                           suspect_at=t0, rank=1, score=0.95, evidence=evidence)  # fmt: skip
    Suspect.objects.create(alert_id=alert.pk, suspect=deploy, rank=2, score=0.05,
                           evidence="checkout itself deployed 2.0")  # fmt: skip
    jobs.run_once(now=t0 + 4 * M)
    incident = Incident.objects.get()
    assert [(s["kind"], s["version"]) for s in incident.suspects] == [("flag", "new-pay"),
                                                                     ("deploy", "2.0")]  # fmt: skip
    assert incident.top_flag_change == change and incident.top_suspect is None
    # Names from telemetry are escaped as literal Markdown: new\-pay, 2\.0.
    markdown = incident.postmortem.markdown
    assert "The most likely change: change of flag new\\-pay at" in markdown
    assert "1. change of flag new\\-pay: 95% of the extra errors" in markdown
    assert "2. deploy of checkout 2\\.0" in markdown
