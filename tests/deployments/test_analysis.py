from datetime import timedelta

import pytest

from deployments import verdicts
from deployments.models import Deployment, DeploySource, Verdict
from tests.deployments.conftest import store, traffic

pytestmark = pytest.mark.django_db


def make_deploy(t0, *, service="shop", version="v2", previous="v1", finished=None) -> Deployment:
    deploy = Deployment(
        service=service,
        version=version,
        previous_version=previous,
        started_at=t0,
        finished_at=finished or t0,
        source=DeploySource.API,
    )
    deploy.schedule_checkpoint(5)
    deploy.save()
    return deploy


def before_and_after(t0, *, after_minutes=15, per_minute=120, seed=1, **candidate):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=per_minute, seed=seed),
        traffic(service="shop", version="v2", start=t0, minutes=after_minutes,
                per_minute=per_minute, seed=seed + 1, **candidate),
    )  # fmt: skip


def test_it_passes_a_clean_deploy_against_the_hour_before(t0):
    before_and_after(t0)
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.PASS
    assert record.baseline_kind == "before"
    assert record.baseline_requests == 7200
    assert record.candidate_requests == 1800
    assert "No significant regression in 1800 requests" in record.reason
    assert not deploy.findings.filter(significant=True).exists()


def test_it_fails_a_route_that_got_twice_as_slow(t0):
    before_and_after(t0, after_minutes=5, slow_route="POST /orders", slowdown=2.0)
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 5)
    assert record.verdict == Verdict.FAIL
    significant = {(f.metric, f.route) for f in record.findings.filter(significant=True)}
    assert ("latency_p95", "POST /orders") in significant
    assert ("latency_p95", "GET /items") not in significant
    assert ("error_rate", "") not in significant
    finding = record.findings.get(metric="latency_p95", route="POST /orders")
    assert finding.candidate_value / finding.baseline_value == pytest.approx(2.0, rel=0.2)
    assert finding.adjusted_p_value < 0.01
    assert finding.interval_low <= finding.candidate_value <= finding.interval_high
    assert finding.threshold == "×1.2 and +10 ms"
    assert "p95 latency on POST /orders rose from" in record.reason


def test_it_fails_a_raised_error_rate(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, error_rate=0.01, exception_type="TimeoutError", seed=3),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=120,
                error_rate=0.05, exception_type="TimeoutError", seed=4),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.FAIL
    finding = record.findings.get(metric="error_rate", route="")
    assert finding.significant
    assert finding.baseline_n == 7200 and finding.candidate_n == 1800
    assert finding.threshold == "+0.5 pp and ×1.5"
    assert not record.findings.filter(metric="new_error_type").exists()
    assert record.reason.startswith("error rate for the service rose from")


def test_it_compares_concurrent_versions_over_the_same_range(t0):
    # A canary: v1 keeps half the traffic. The hour before was much slower, so
    # judging against it would wrongly pass; against v1 now, v2 errs more.
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=60, error_rate=0.08, seed=5),
        traffic(service="shop", version="v1", start=t0, minutes=15, per_minute=120,
                error_rate=0.005, seed=6),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=120,
                error_rate=0.05, seed=7),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.baseline_kind == "concurrent"
    assert record.baseline_requests == 1800
    assert record.verdict == Verdict.FAIL
    assert record.findings.get(metric="error_rate", route="").significant


def test_it_is_inconclusive_with_too_little_traffic(t0):
    before_and_after(t0, per_minute=20)
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 5)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert record.candidate_requests == 100
    assert record.more_requests_needed == 3269
    assert "~3269 more requests needed" in record.reason


def test_it_says_when_the_baseline_is_too_small_to_ever_decide(t0):
    before_and_after(t0, per_minute=4)
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert record.baseline_requests == 240
    assert record.more_requests_needed is None
    assert record.reason.startswith("Too little baseline traffic (240 requests")


def test_it_is_inconclusive_without_a_baseline(t0):
    store(traffic(service="shop", version="v2", start=t0, minutes=5, per_minute=60))
    deploy = make_deploy(t0, previous="")
    record = verdicts.run_checkpoint(deploy.pk, 5)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert record.reason.startswith("No baseline")


def test_it_fails_on_a_new_error_type(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, error_rate=0.004, exception_type="TimeoutError", seed=8),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=120,
                error_rate=0.006, exception_type="KeyError", seed=9),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.FAIL
    finding = record.findings.get(metric="new_error_type")
    assert finding.detail == "KeyError" and finding.significant
    assert not record.findings.get(metric="error_rate", route="").significant


def test_it_fails_when_traffic_falls_to_zero_during_the_rollout(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=10),
        traffic(service="shop", version="v2", start=t0 + timedelta(minutes=3), minutes=12,
                per_minute=120, seed=11),
    )  # fmt: skip
    deploy = make_deploy(t0, finished=t0 + timedelta(minutes=4))
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.FAIL
    finding = record.findings.get(metric="rollout_throughput")
    assert finding.significant and finding.candidate_value == 0
    assert finding.baseline_value == 120


def test_it_keeps_the_verdict_history_and_reruns_idempotently(t0):
    before_and_after(t0)
    deploy = make_deploy(t0)
    verdicts.run_checkpoint(deploy.pk, 5)
    verdicts.run_checkpoint(deploy.pk, 15)
    verdicts.run_checkpoint(deploy.pk, 15)
    deploy.refresh_from_db()
    history = list(deploy.verdict_records.values_list("checkpoint", "verdict"))
    assert history == [(5, Verdict.INCONCLUSIVE), (15, Verdict.PASS)]
    assert deploy.verdict == Verdict.PASS
    latest = deploy.verdict_records.get(checkpoint=15)
    assert deploy.findings.count() == deploy.findings.filter(evaluation__checkpoint=5).count() + (
        latest.findings.count()
    )
