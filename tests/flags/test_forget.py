"""Forgetting services (clear_demo): the flag changes only they evaluated go; shared ones stay."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from flags import forget
from flags.models import FlagChange, FlagFinding, FlagSettings, FlagVerdictRecord
from telemetry import ingest
from telemetry.models import FlagEvaluation, FlagEvaluationBatch
from tests.flags.factories import evaluation_event, span_row, with_events

pytestmark = pytest.mark.django_db

DEMO, REAL = "demo-checkout", "shop"


@pytest.fixture
def now():
    return timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=30)


def _change(flag: str, services: list[str], at) -> FlagChange:
    """A judged change, with one look and a finding on each of its services."""
    change = FlagChange.objects.create(flag=flag, services=services, at=at, verdict="fail")
    record = FlagVerdictRecord.objects.create(
        change=change, minute=5, verdict="fail", reason="errors up", control="off",
        window_start=at, window_end=at + timedelta(minutes=5),
    )  # fmt: skip
    for service in services:
        FlagFinding.objects.create(
            change=change, record=record, service=service, variant="on", metric="error_rate",
            baseline_n=100, candidate_n=100,
        )  # fmt: skip
    return change


def test_a_change_only_forgotten_services_evaluate_goes_with_its_looks_and_findings(now):
    demo_only = _change("demo-flag", [DEMO, "demo-payments"], now)
    real = _change("real-flag", [REAL], now)

    assert forget.forget_services([DEMO, "demo-payments"]) == 1

    assert list(FlagChange.objects.values_list("pk", flat=True)) == [real.pk]
    assert not FlagVerdictRecord.objects.filter(change_id=demo_only.pk).exists()
    assert list(FlagFinding.objects.values_list("service", flat=True)) == [REAL]


def test_a_change_other_services_evaluate_too_stays_without_the_forgotten_ones(now):
    shared = _change("checkout-flag", [DEMO, REAL], now)

    assert forget.forget_services([DEMO]) == 0

    shared.refresh_from_db()
    assert shared.services == [REAL]
    assert list(shared.findings.values_list("service", flat=True)) == [REAL]
    assert shared.verdict_records.count() == 1


def test_a_flag_left_without_changes_loses_its_settings(now):
    _change("demo-flag", [DEMO], now)
    _change("both-flag", [DEMO], now)
    _change("both-flag", [REAL], now + timedelta(minutes=1))  # a later change, elsewhere
    FlagChange.objects.create(flag="posted-flag", services=[], at=now)  # names no service
    for flag in ("demo-flag", "both-flag", "posted-flag", "never-changed"):
        FlagSettings.objects.create(flag=flag, control="off")

    assert forget.forget_services([DEMO]) == 2

    assert sorted(FlagSettings.objects.values_list("flag", flat=True)) == [
        "both-flag", "never-changed", "posted-flag",
    ]  # fmt: skip
    assert sorted(FlagChange.objects.values_list("flag", flat=True)) == ["both-flag", "posted-flag"]


def test_clear_demo_forgets_the_demo_flags_and_their_evaluations_and_keeps_the_rest(now):
    for service in (DEMO, REAL):
        _change(f"{service}-flag", [service], now)
        event = evaluation_event(f"{service}-flag", now, variant="on")
        spans = [span_row(service=service, version="v1", start=now) for _ in range(3)]
        ingest.store_rows([with_events(span, [event]) for span in spans])
    evaluations = {
        service: FlagEvaluation.objects.filter(service=service).count()
        + FlagEvaluationBatch.objects.filter(service=service).count()
        for service in (DEMO, REAL)
    }
    assert all(evaluations.values()), evaluations  # ingest stored them, in one form or the other

    out = StringIO()
    call_command("clear_demo", stdout=out)

    assert list(FlagChange.objects.values_list("flag", flat=True)) == [f"{REAL}-flag"]
    assert not FlagEvaluation.objects.filter(service=DEMO).exists()
    assert not FlagEvaluationBatch.objects.filter(service=DEMO).exists()
    kept = (FlagEvaluation.objects.filter(service=REAL).count()
            + FlagEvaluationBatch.objects.filter(service=REAL).count())  # fmt: skip
    assert kept == evaluations[REAL]
    assert "1 flag changes" in out.getvalue()


def test_suspect_rows_naming_a_forgotten_change_go_with_it(now):
    from deployments.models import Deployment, Suspect

    demo_only = _change("demo-flag", [DEMO], now)
    real = _change("real-flag", [REAL], now)
    deploy = Deployment.objects.create(service=REAL, version="v2", started_at=now)
    for change in (demo_only, real):  # each a suspect of the real deploy...
        Suspect.objects.create(
            deployment=deploy, suspect_kind="flag", suspect_change_id=change.pk, rank=1,
            score=0.5, evidence="",
        )  # fmt: skip
    Suspect.objects.create(  # ...and the demo change's own failed rollout has a deploy suspect
        change_kind="flag", change_id=demo_only.pk, suspect=deploy, rank=1, score=0.5,
        evidence="",
    )  # fmt: skip

    forget.forget_services([DEMO])

    assert list(Suspect.objects.values_list("suspect_kind", "suspect_change_id")) == [
        ("flag", real.pk)
    ]
