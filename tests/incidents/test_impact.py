"""What an incident cost: budget per SLO, failed and slow requests, distinct users."""

import os
from datetime import timedelta

import pytest

from incidents import jobs, operations, refresh
from incidents.models import Incident
from tests.incidents import factories as f

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)


def request(at, *, error=False, ms=20, **attributes):
    return f.span("checkout", at, trace_id=os.urandom(16), span_id=os.urandom(8), error=error,
                  duration_ms=ms, attributes=attributes)  # fmt: skip


def test_impact_counts_budget_failed_and_slow_requests_and_distinct_users(t0):
    slo = f.make_slo()  # 99%: the budget is 1% of the window's events
    # Counted since before its 30-day window, so its budget is not projected (docs/slo.md).
    f.slo_minutes(slo, t0 - 31 * 1440 * M, 1, bad=0, total=1)
    f.slo_minutes(slo, t0 - 30 * M, 30, bad=0)
    f.slo_minutes(slo, t0, 20, bad=30)
    f.page_alert(slo, t0 + 5 * M)
    inside = t0 + 2 * M
    f.store([
        request(inside, error=True, **{"user.id": "u1"}),
        request(inside, error=True, **{"user.id": "u2"}),
        request(inside, error=True, **{"user.id": "u1"}),
        request(inside, ms=2000, **{"enduser.id": "u3"}),
        request(inside, ms=2000),
        *[request(inside, **{"user.id": "u4"}) for _ in range(5)],
        request(t0 - 10 * M, error=True, **{"user.id": "u9"}),  # before the incident
    ])  # fmt: skip
    jobs.run_once(now=t0 + 6 * M)
    incident = operations.update(
        Incident.objects.get(), {"status": "resolved", "resolved_at": t0 + 20 * M},
        actor="ana", now=t0 + 21 * M,
    )  # fmt: skip
    impact = refresh.refresh(incident.pk, now=t0 + 25 * M).impact
    assert (impact["failed_requests"], impact["slow_requests"], impact["affected_users"]) == (
        3, 2, 3,
    )  # fmt: skip
    [budget] = impact["slos"]
    # 50 minutes × 100 events in the window: a budget of 50; 20 × 30 bad during the incident.
    assert budget["bad"] == 600 and budget["budget_total"] == pytest.approx(50)
    assert budget["budget_consumed_pct"] == pytest.approx(1200)
    assert impact["duration_seconds"] == 20 * 60
    assert impact["time_to_detect_seconds"] == 5 * 60
