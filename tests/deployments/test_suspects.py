import random
from datetime import timedelta

import pytest

from deployments import jobs, suspects, topology, verdicts
from deployments.models import Deployment, Verdict
from slo.models import SLO, Alert, Severity
from tests.deployments.conftest import CLIENT, span_row, store, traffic
from tests.helpers import bearer

pytestmark = pytest.mark.django_db


def checkout_trace(start, *, frontend: str, payments: str, failing: bool, rng) -> list[tuple]:
    """frontend POST /checkout → its client span → payments POST /charge."""
    trace_id = rng.randbytes(16)
    root, call, charge = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
    common = {"trace_id": trace_id, "rng": rng}
    return [
        span_row(service="frontend", version=frontend, start=start, route="POST /checkout",
                 duration_ms=80, error=failing, span_id=root, **common),
        span_row(service="frontend", version=frontend, start=start, route="POST /charge",
                 duration_ms=60, error=failing, kind=CLIENT, span_id=call, parent=root,
                 **common),
        span_row(service="payments", version=payments, start=start, route="POST /charge",
                 duration_ms=55, error=failing, span_id=charge, parent=call,
                 exception_type="CardDeclinedError" if failing else "", **common),
    ]  # fmt: skip


def test_a_downstream_deploy_ranks_first_as_the_suspect(t0):
    rng = random.Random(7)
    payments_deployed = t0 - timedelta(minutes=3)
    rows = []
    for second in range(-3600, 900, 2):
        start = t0 + timedelta(seconds=second)
        payments = "v5" if start >= payments_deployed else "v4"
        frontend = "v2" if start >= t0 else "v1"
        failing = payments == "v5" and rng.random() < 0.2
        rows += checkout_trace(start, frontend=frontend, payments=payments, failing=failing,
                               rng=rng)  # fmt: skip
    store(rows)
    search = Deployment.objects.create(
        service="search", version="v9", started_at=t0 - timedelta(minutes=10)
    )
    payments = Deployment.objects.create(
        service="payments", version="v5", previous_version="v4", started_at=payments_deployed
    )
    frontend = Deployment.objects.create(
        service="frontend", version="v2", previous_version="v1", started_at=t0
    )
    record = verdicts.run_checkpoint(frontend.pk, 15)
    assert record.verdict == Verdict.FAIL
    ranked = list(frontend.suspects.values_list("suspect__service", flat=True))
    # Errors began with payments v5 at t0-3min; frontend's deploy at t0 came after the
    # onset, so it cannot have begun the regression and is not listed.
    assert ranked == ["payments", "search"]
    top = frontend.suspects.first()
    assert top.suspect_id == payments.pk and top.rank == 1
    assert "in child spans served by payments, which deployed v5" in top.evidence
    assert frontend.suspects.get(suspect=search).evidence.endswith("not below frontend.")
    # payments explains the whole regression (its share is 1), and the verdict says so.
    frontend.refresh_from_db()
    assert frontend.verdict_reason.endswith(
        "Likely cause: payments v5, not this deploy (100% of the regression)."
    )


def test_a_page_alert_gets_suspects_once(t0, client, read_token):
    rng = random.Random(3)
    rows = []
    for second in range(-1800, 600, 3):
        start = t0 + timedelta(seconds=second)
        payments = "v5" if start >= t0 else "v4"
        failing = payments == "v5" and rng.random() < 0.3
        rows += checkout_trace(start, frontend="v1", payments=payments, failing=failing, rng=rng)
    store(rows)
    Deployment.objects.create(service="payments", version="v5", started_at=t0)
    slo = SLO.objects.create(
        name="checkout-availability", service="frontend", route="POST /checkout", objective=99.9
    )
    now = t0 + timedelta(minutes=10)
    alert = Alert.objects.create(
        slo=slo, severity=Severity.PAGE, long_window=timedelta(minutes=10),
        short_window=timedelta(minutes=5), threshold=14.4, long_burn_rate=300,
        short_burn_rate=300, budget_consumed_pct=5, fired_at=now, last_evaluated_at=now,
    )  # fmt: skip
    assert jobs.explain_alerts(now=now) == 1
    assert jobs.explain_alerts(now=now) == 0
    response = client.get(f"/api/v1/alerts/{alert.pk}/suspects", headers=bearer(read_token))
    [suspect] = response.json()
    assert suspect["rank"] == 1 and suspect["deployment"]["service"] == "payments"
    assert suspect["kind"] == "deploy" and suspect["change"] is None
    assert "in child spans served by payments" in suspect["evidence"]


def front_then_downstream(t0, rng):
    """frontend v2 deploys cleanly at t0; payments v5, a minute later, fails 20% of charges.

    Every failed charge fails the checkout above it (parent links through
    frontend's client span), and durations never change: by construction all of
    the extra errors, and none of any extra time, sit under payments.
    """
    payments_at = t0 + timedelta(minutes=1)
    rows = []
    for second in range(-3600, 600, 2):
        start = t0 + timedelta(seconds=second)
        payments = "v5" if start >= payments_at else "v4"
        failing = payments == "v5" and rng.random() < 0.2
        rows += checkout_trace(start, frontend="v2" if start >= t0 else "v1", payments=payments,
                               failing=failing, rng=rng)  # fmt: skip
    store(rows)
    frontend = Deployment.objects.create(
        service="frontend", version="v2", previous_version="v1", started_at=t0
    )
    payments = Deployment.objects.create(
        service="payments", version="v5", previous_version="v4", started_at=payments_at
    )
    return frontend, payments


def front_regression(t0, minutes=5) -> suspects.Regression:
    """What a failed checkpoint of frontend's deploy asks: the window starts at its deploy."""
    return suspects.Regression(
        service="frontend", route="POST /checkout", start=t0,
        end=t0 + timedelta(minutes=minutes), baseline_start=t0 - timedelta(minutes=60), began=t0,
    )  # fmt: skip


def test_the_onset_is_found_in_the_minutes_not_taken_from_the_deploy(t0):
    front_then_downstream(t0, random.Random(5))
    onset = suspects.find_onset(front_regression(t0))
    assert onset.at == t0 + timedelta(minutes=1) and onset.metric == "errors"


def test_a_downstream_deploy_a_minute_after_a_clean_front_deploy_is_blamed(t0):
    frontend, payments = front_then_downstream(t0, random.Random(5))
    suspects.record_for_deploy(frontend, front_regression(t0))
    ranked = list(frontend.suspects.all())
    assert [s.suspect for s in ranked] == [payments, frontend]
    top, own = ranked
    # payments explains all of the extra errors: share 1, plus a tie-break of at most 0.01.
    assert 1.0 <= top.score <= 1.01
    assert "began at" in top.evidence and "100% of its extra errors" in top.evidence
    assert "payments, which deployed v5 as the regression began" in top.evidence
    # frontend's deploy: nothing of the regression is left for it to explain.
    assert own.score <= 0.01 and "0% of it is not explained" in own.evidence
    assert suspects.blamed_elsewhere(frontend) == top
    assert top.onset_at == own.onset_at == t0 + timedelta(minutes=1)
    listed = suspects.for_deploy(frontend)
    assert listed.shown == [top] and listed.total == 2 and listed.hidden == 1
    assert suspects.for_deploy(frontend, show_all=True).shown == [top, own]


def test_a_deploy_that_alone_explains_its_regression_is_not_blamed_elsewhere(t0):
    rows = traffic(
        service="shop",
        version="v1",
        start=t0 - timedelta(minutes=60),
        minutes=60,
        per_minute=60,
        seed=1,
    )
    rows += traffic(service="shop", version="v2", start=t0, minutes=10, per_minute=60,
                    error_rate=0.2, seed=2)  # fmt: skip
    store(rows)
    deploy = Deployment.objects.create(service="shop", version="v2", started_at=t0)
    regression = suspects.Regression("shop", "", t0, t0 + timedelta(minutes=10),
                                     t0 - timedelta(minutes=60), began=t0)  # fmt: skip
    [own] = suspects.record_for_deploy(deploy, regression)
    assert own.suspect == deploy and own.score >= 1.0
    assert suspects.blamed_elsewhere(deploy) is None


def test_superseded_and_later_deploys_are_not_suspects(t0):
    # shop went v1 → v4 every 3 minutes, then v5 at t0 broke it; each version
    # stopped serving when the next one came.
    versions = [("v1", -60, 51), ("v2", -9, 3), ("v3", -6, 3), ("v4", -3, 3)]
    rows = []
    for seed, (version, offset, minutes) in enumerate(versions):
        rows += traffic(service="shop", version=version, start=t0 + timedelta(minutes=offset),
                        minutes=minutes, per_minute=60, seed=seed)  # fmt: skip
    rows += traffic(service="shop", version="v5", start=t0, minutes=10, per_minute=60,
                    error_rate=0.2, seed=9)  # fmt: skip
    store(rows)
    for version, offset, _ in versions[1:]:
        Deployment.objects.create(service="shop", version=version,
                                  started_at=t0 + timedelta(minutes=offset))  # fmt: skip
    v5 = Deployment.objects.create(service="shop", version="v5", started_at=t0)
    search = Deployment.objects.create(
        service="search", version="s9", started_at=t0 - timedelta(minutes=20)
    )
    Deployment.objects.create(service="billing", version="b2", started_at=t0 + timedelta(minutes=4))
    regression = suspects.Regression("shop", "", t0, t0 + timedelta(minutes=10),
                                     t0 - timedelta(minutes=60), began=t0)  # fmt: skip
    recorded = suspects.record_for_deploy(v5, regression)
    # v2-v4 were superseded before the onset (t0) and no longer served; billing
    # deployed 4 minutes after it; search is not below shop: listed only on asking.
    assert [s.suspect for s in recorded] == [v5, search]
    assert suspects.for_deploy(v5).shown == [recorded[0]]


def test_the_api_lists_a_handful_and_all_on_asking(t0, client, read_token):
    frontend, payments = front_then_downstream(t0, random.Random(5))
    suspects.record_for_deploy(frontend, front_regression(t0))
    url = f"/api/v1/deployments/{frontend.pk}"
    body = client.get(url, headers=bearer(read_token)).json()
    assert [s["deployment"]["service"] for s in body["suspects"]] == ["payments"]
    assert body["suspects_total"] == 2
    every = client.get(url, {"all": "1"}, headers=bearer(read_token)).json()
    assert [s["deployment"]["service"] for s in every["suspects"]] == ["payments", "frontend"]


def test_the_failed_checkpoint_of_the_clean_front_deploy_blames_the_downstream_one(t0):
    frontend, payments = front_then_downstream(t0, random.Random(5))
    record = verdicts.run_checkpoint(frontend.pk, 5)
    assert record.verdict == Verdict.FAIL  # frontend's requests did fail, from t0+1min
    shown = suspects.for_deploy(frontend).shown
    assert [s.suspect for s in shown] == [payments]
    assert suspects.blamed_elsewhere(frontend).suspect == payments


def test_a_share_below_can_be_taken_in_one_metric():
    """By hand, 100 requests each side.

    The route's error rate 1% → 5% (+4 points) and mean 100 → 200 ms (+100).
    back: errors under it 0 → 1 (+1 point: 25%), time under it 50 → 140 ms (+90: 90%).
    cache: errors under it 0 → 4 (+4 points: 100%), time under it 10 → 10 ms (0%).
    """
    baseline = topology.Breakdown(requests=100, errors=1, duration_us=100 * 100_000,
                                  errors_under={"back": 0, "cache": 0},
                                  time_under_us={"back": 100 * 50_000, "cache": 100 * 10_000})
    regressed = topology.Breakdown(requests=100, errors=5, duration_us=100 * 200_000,
                                   errors_under={"back": 1, "cache": 4},
                                   time_under_us={"back": 100 * 140_000, "cache": 100 * 10_000})
    assert topology.downstream_shares(regressed, baseline) == pytest.approx(
        {"back": 0.9, "cache": 1.0})  # the larger of the two, as a deploy scores it
    assert topology.downstream_shares(regressed, baseline, metric="errors") == pytest.approx(
        {"back": 0.25, "cache": 1.0})
    assert topology.downstream_shares(regressed, baseline, metric="latency") == pytest.approx(
        {"back": 0.9, "cache": 0.0})
    with pytest.raises(ValueError):
        topology.downstream_shares(regressed, baseline, metric="p99")
