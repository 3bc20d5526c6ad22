import random
from datetime import timedelta

import pytest

from deployments import jobs, verdicts
from deployments.models import Deployment, Verdict
from slo.models import SLO, Alert, Severity
from tests.deployments.conftest import CLIENT, span_row, store
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
    assert "in child spans served by payments" in suspect["evidence"]
