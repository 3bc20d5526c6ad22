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
    assert record.reason.startswith("No regression in 1800 requests of v2 on 2 route(s)")
    assert "with 99% confidence neither the error rate nor p95 latency rose" in record.reason
    assert not deploy.findings.filter(significant=True).exists()
    required = record.findings.filter(route="", metric__in=["error_rate", "latency_p95"])
    assert required.count() == 2 and all(f.within_threshold for f in required)


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
    assert finding.threshold == "×1.2 and +10 ms; a significant rise fails from 50% of it"
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
    assert finding.threshold == "+0.5 pp and ×1.5; a significant rise fails from 50% of it"
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


def test_it_is_inconclusive_with_too_little_traffic_and_says_how_many_more_would_do(t0):
    before_and_after(t0, per_minute=20)
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 5)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert record.candidate_requests == 100
    more = record.more_requests_needed
    assert f"~{more} more requests needed" in record.reason
    # By hand, at the 5-minute look's pass alpha (0.01·ln(1 + (e-1)/12) = 0.00134,
    # z = 3.21 for each half) and power 0.8 (z = 0.84): with p = 1/1202 for both
    # sides, (0.005/4.05)² − p/1202 = 8.3e-7 of variance is left for the candidate,
    # so the error rate alone needs p/8.3e-7 ≈ 1000 requests, 900 more.
    assert 850 <= more <= 1500
    # And the traffic it asks for does pass: the same clean version, at the rate
    # that serves 100 + more requests in the 5 minutes.
    store(traffic(service="shop2", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                  per_minute=20, seed=11),
          traffic(service="shop2", version="v2", start=t0, minutes=5,
                  per_minute=(100 + more) // 5 + 1, seed=12))  # fmt: skip
    enough = make_deploy(t0, service="shop2")
    assert verdicts.run_checkpoint(enough.pk, 5).verdict == Verdict.PASS


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
        traffic(service="shop", version="v2", start=t0 + timedelta(minutes=3), minutes=27,
                per_minute=120, seed=11),
    )  # fmt: skip
    deploy = make_deploy(t0, finished=t0 + timedelta(minutes=4))
    record = verdicts.run_checkpoint(deploy.pk, 5)
    assert record.verdict == Verdict.FAIL
    finding = record.findings.get(metric="rollout_throughput")
    assert finding.significant and finding.candidate_value == 0
    assert finding.baseline_value == 120
    # The outage is over: once a clean window since it passes on its own, it
    # is shown, no longer holding the gate.
    record = verdicts.run_checkpoint(deploy.pk, 30)
    assert record.verdict == Verdict.RECOVERED
    assert record.findings.filter(metric="transient_regression").exists()
    assert record.window_start >= t0 + timedelta(minutes=3)


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
    earlier = deploy.findings.filter(verdict_record__checkpoint=5).count()
    assert deploy.findings.count() == earlier + latest.findings.count()


def test_it_fails_a_deploy_after_which_the_service_serves_nothing(t0):
    # The old version served 120 requests a minute; after the deploy nothing
    # answers. Five silent minutes at that rate have Poisson chance e^-600.
    store(traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                  per_minute=120, seed=21))  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 5)
    assert record.verdict == Verdict.FAIL
    assert record.reason.startswith("shop has served no requests in the 5 minutes since v2")
    finding = record.findings.get(metric="served_requests")
    assert finding.significant and finding.baseline_value == 120


def test_it_fails_a_silent_service_within_the_first_minutes(t0):
    store(traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                  per_minute=120, seed=22))  # fmt: skip
    deploy = make_deploy(t0)
    deploy.schedule_checkpoint(1)
    deploy.save()
    record = verdicts.run_checkpoint(deploy.pk, 2)
    assert record.verdict == Verdict.FAIL


def test_a_deploy_that_never_rolled_out_says_so_and_does_not_pass(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=75,
                per_minute=120, seed=23),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.INCONCLUSIVE
    assert record.reason.startswith("v2 has served no requests in the 15 minutes since the deploy")
    assert "has not rolled out" in record.reason


def test_a_new_route_failing_with_a_new_exception_fails_the_deploy(t0):
    # v2 adds GET /new, which the baseline never served and which always throws:
    # 300 errors of a new type, more than the 120 requests of the shared routes.
    # Counted over all of v2's requests (120 + 300), its table has no negative cell.
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=24),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=8, seed=25),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=20, seed=26,
                routes=("GET /new",), error_rate=1.0, exception_type="NewRouteError"),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.FAIL
    new_type = record.findings.get(metric="new_error_type")
    assert new_type.detail == "NewRouteError" and new_type.significant
    assert (new_type.candidate_value, new_type.candidate_n) == (300, 420)
    route = record.findings.get(metric="error_rate", route="GET /new")
    assert route.significant and route.candidate_value == 1.0 and route.detail == "new route"


def test_a_brand_new_clean_route_is_no_regression(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=27),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=120, seed=28),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=20, seed=29,
                routes=("GET /new",)),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    assert record.verdict == Verdict.PASS
    assert not record.findings.get(metric="error_rate", route="GET /new").significant


def test_more_traffic_to_a_slow_route_is_not_a_latency_regression(t0):
    # Before: /fast and /slow (5x slower) alternate. After: the same code, but
    # four requests in five go to /slow. Pooled, p50 and p95 rise by far more
    # than 20%; route by route nothing changed.
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=30, routes=("GET /fast", "GET /slow"),
                slow_route="GET /slow", slowdown=5.0),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=120, seed=31,
                routes=("GET /fast", "GET /slow", "GET /slow", "GET /slow", "GET /slow"),
                slow_route="GET /slow", slowdown=5.0),
    )  # fmt: skip
    deploy = make_deploy(t0)
    record = verdicts.run_checkpoint(deploy.pk, 15)
    p50 = record.findings.get(metric="latency_p50", route="")
    assert not p50.significant
    assert 0.8 < p50.candidate_value / p50.baseline_value < 1.25  # mix-adjusted
    assert record.verdict != Verdict.FAIL


def test_a_warm_up_is_a_transient_regression_that_recovers_and_opens_the_gate(t0, client,
                                                                               read_token):
    # Three minutes at 4x latency right after the deploy, then as fast as v1.
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=40),
        traffic(service="shop", version="v2", start=t0, minutes=3, per_minute=120, seed=41,
                median_ms=160.0),
        traffic(service="shop", version="v2", start=t0 + timedelta(minutes=3), minutes=27,
                per_minute=120, seed=42),
    )  # fmt: skip
    deploy = make_deploy(t0)
    deploy.schedule_checkpoint(1)
    deploy.save()
    verdicts_seen = []
    for minute in range(1, 31):
        verdicts.run_checkpoint(deploy.pk, minute)
        deploy.refresh_from_db()
        verdicts_seen.append(deploy.verdict)
    assert verdicts_seen[2] == Verdict.FAIL  # by minute 3
    assert verdicts_seen[-1] == Verdict.RECOVERED
    # A recovery needs a window of at least ten minutes after the warm-up,
    # on the recovery grid (settings: every 10 minutes).
    assert verdicts_seen.index(Verdict.RECOVERED) + 1 >= 20
    assert deploy.recovered_from >= t0 + timedelta(minutes=3)
    assert deploy.verdict_reason.startswith("Transient regression, recovered: v2 regressed")
    transient = deploy.latest_findings().get(metric="transient_regression")
    assert transient.candidate_value >= 3 and "extra latency" in transient.detail
    history = list(deploy.verdict_records.values_list("verdict", flat=True))
    assert Verdict.FAIL in history and history[-1] == Verdict.RECOVERED
    response = client.get(
        "/api/v1/gate?service=shop", HTTP_AUTHORIZATION=f"Bearer {read_token}"
    )
    assert response.status_code == 200, response.json()


def test_the_look_state_is_shared_through_redis_when_configured(t0, settings):
    import os

    from django.core.cache.backends.redis import RedisCache

    from deployments import analysis

    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "verdicts": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                     "LOCATION": url, "KEY_PREFIX": f"test-{t0.timestamp()}"},
    }  # fmt: skip
    before_and_after(t0, after_minutes=3)
    deploy = make_deploy(t0)
    analysis.evaluate(deploy, 2)
    # Another worker: its own connection to the same Redis, nothing in its memory.
    other = RedisCache(url, {"KEY_PREFIX": f"test-{t0.timestamp()}"})
    key = f"deployments:side:{deploy.pk}:candidate:{deploy.judged_from.isoformat()}"
    read_until, side = other.get(key)
    assert read_until == t0 + timedelta(minutes=2)
    assert side.total()[0] == 2 * 120
    other.delete_many([key])
