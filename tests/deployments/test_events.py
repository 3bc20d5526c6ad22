import random
from datetime import timedelta

import pytest

from deployments import events
from deployments.models import Deployment, DeploySource, DeployStatus
from tests.deployments.conftest import span_row, store, traffic

pytestmark = pytest.mark.django_db


def old_then_new(t0, *, new_minutes=10):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=30), minutes=30,
                per_minute=30, seed=1),
        traffic(service="shop", version="v2", start=t0, minutes=new_minutes, per_minute=30,
                seed=2),
    )  # fmt: skip


def test_it_detects_a_new_version_at_its_first_span(t0):
    old_then_new(t0)
    created = events.detect_deploys(now=t0 + timedelta(minutes=10))
    assert [(d.service, d.version) for d in created] == [("shop", "v2")]
    deploy = created[0]
    assert deploy.source == DeploySource.DETECTED
    assert deploy.started_at == t0 and deploy.first_span_at == t0
    assert deploy.previous_version == "v1"
    assert deploy.environment == "production"
    assert deploy.next_checkpoint == 1  # the first look, a minute in
    # The service's first version is where its history starts, not a deploy.
    assert not Deployment.objects.filter(version="v1").exists()


def test_detection_is_idempotent(t0):
    old_then_new(t0)
    events.detect_deploys(now=t0 + timedelta(minutes=10))
    assert events.detect_deploys(now=t0 + timedelta(minutes=11)) == []
    assert Deployment.objects.count() == 1


def test_a_posted_deploy_merges_with_the_detected_one(t0):
    old_then_new(t0)
    posted, created = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0 - timedelta(minutes=2),
         "deployer": "ci"},
        source=DeploySource.API,
    )  # fmt: skip
    assert created
    events.detect_deploys(now=t0 + timedelta(minutes=10))
    deploy = Deployment.objects.get()
    assert deploy.pk == posted.pk and deploy.source == DeploySource.API
    assert deploy.first_span_at == t0 and deploy.deployed_at == t0
    assert deploy.deployer == "ci"


def test_a_post_after_detection_updates_the_detected_deploy(t0):
    old_then_new(t0)
    [detected] = events.detect_deploys(now=t0 + timedelta(minutes=3))
    deploy, created = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0 + timedelta(minutes=3),
         "commit_sha": "abc123", "url": "https://ci.example/1"},
        source=DeploySource.API,
    )  # fmt: skip
    assert not created and deploy.pk == detected.pk
    deploy.refresh_from_db()
    assert deploy.source == DeploySource.API and deploy.commit_sha == "abc123"
    assert deploy.first_span_at == t0
    assert Deployment.objects.count() == 1


def test_a_return_to_the_old_version_is_a_rollback_of_the_new_one(t0):
    old_then_new(t0, new_minutes=10)
    store(traffic(service="shop", version="v1", start=t0 + timedelta(minutes=10), minutes=10,
                  per_minute=30, seed=3))  # fmt: skip
    created = events.detect_deploys(now=t0 + timedelta(minutes=20))
    assert [d.version for d in created] == ["v2", "v1"]
    new, rollback = created
    assert rollback.rollback_of_id == new.pk
    assert rollback.started_at == t0 + timedelta(minutes=10)
    assert rollback.previous_version == "v2"
    new.refresh_from_db()
    assert new.status == DeployStatus.ROLLED_BACK
    assert events.detect_deploys(now=t0 + timedelta(minutes=21)) == []


def test_reposting_the_same_version_within_an_hour_updates_it(t0):
    first, created = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0}, source=DeploySource.API
    )
    again, created_again = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0 + timedelta(minutes=20),
         "status": "failed"},
        source=DeploySource.API,
    )  # fmt: skip
    assert created and not created_again and first.pk == again.pk
    assert again.status == DeployStatus.FAILED
    later, created_later = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0 + timedelta(minutes=90)},
        source=DeploySource.API,
    )
    assert created_later and Deployment.objects.count() == 2


def test_posting_an_earlier_version_records_a_rollback(t0):
    v1, _ = events.record_deploy(
        {"service": "shop", "version": "v1", "started_at": t0}, source=DeploySource.API
    )
    v2, _ = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0 + timedelta(minutes=10)},
        source=DeploySource.API,
    )
    back, created = events.record_deploy(
        {"service": "shop", "version": "v1", "started_at": t0 + timedelta(minutes=20)},
        source=DeploySource.API,
    )
    assert created and back.pk != v1.pk
    assert back.rollback_of_id == v2.pk and back.previous_version == "v2"
    v2.refresh_from_db()
    assert v2.status == DeployStatus.ROLLED_BACK


def spans_of(version, start, minutes, *, environment="production", per_minute=30, seed=1):
    """Server spans of shop at a steady rate, naming an environment."""
    rng = random.Random(seed)
    step = 60.0 / per_minute
    return [
        span_row(service="shop", version=version, start=start + timedelta(seconds=i * step),
                 environment=environment, rng=rng)
        for i in range(int(minutes * per_minute))
    ]  # fmt: skip


def test_a_post_without_environment_takes_the_one_its_spans_name(t0):
    store(spans_of("v1", t0 - timedelta(minutes=30), 30, environment="prod"),
          spans_of("v2", t0, 10, environment="prod", seed=2))  # fmt: skip
    deploy, created = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0}, source=DeploySource.API,
        now=t0 + timedelta(minutes=10),
    )  # fmt: skip
    assert created and deploy.environment == "prod"
    assert deploy.previous_version == "v1"


def test_a_post_before_its_version_serves_takes_the_environment_of_what_serves(t0):
    store(spans_of("v1", t0 - timedelta(minutes=30), 30, environment="prod"))
    # The pipeline posts v2 before it serves: what serves now (v1) names the place.
    early, _ = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0 - timedelta(minutes=1)},
        source=DeploySource.API, now=t0 - timedelta(minutes=1),
    )  # fmt: skip
    assert early.environment == "prod"


def test_a_post_of_a_new_service_before_any_span_waits_for_the_spans_to_name_it(t0):
    posted, _ = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0}, source=DeploySource.API, now=t0
    )
    assert posted.environment == ""
    # Posting again at the end of the pipeline updates the same deploy.
    again, created = events.record_deploy(
        {"service": "shop", "version": "v2", "status": "succeeded"},
        source=DeploySource.API, now=t0 + timedelta(minutes=2),
    )  # fmt: skip
    assert not created and again.pk == posted.pk
    store(spans_of("v1", t0 - timedelta(minutes=30), 30, environment="prod"),
          spans_of("v2", t0 + timedelta(minutes=2), 10, environment="prod", seed=2))  # fmt: skip
    events.detect_deploys(now=t0 + timedelta(minutes=12))
    deploy = Deployment.objects.get()
    assert deploy.environment == "prod" and deploy.first_span_at == t0 + timedelta(minutes=2)


def test_a_post_naming_the_environment_completes_one_that_did_not(t0):
    first, _ = events.record_deploy(
        {"service": "shop", "version": "v2", "started_at": t0}, source=DeploySource.API, now=t0
    )
    again, created = events.record_deploy(
        {"service": "shop", "version": "v2", "environment": "staging", "status": "succeeded"},
        source=DeploySource.API, now=t0 + timedelta(minutes=3),
    )  # fmt: skip
    assert not created and again.pk == first.pk and again.environment == "staging"


def test_a_posted_environment_is_kept(t0):
    store(spans_of("v2", t0, 10, environment="prod"))
    deploy, _ = events.record_deploy(
        {"service": "shop", "version": "v2", "environment": "staging", "started_at": t0},
        source=DeploySource.API,
    )
    assert deploy.environment == "staging"


def stopped_canary_then_new(t0):
    """1.0.0 serves throughout; a 1.2.0 canary serves 5 minutes and is dropped;
    1.3.0 arrives at t0+10 beside 1.0.0."""
    store(spans_of("1.0.0", t0 - timedelta(minutes=30), 50),
          spans_of("1.2.0", t0, 5, per_minute=10, seed=2),
          spans_of("1.3.0", t0 + timedelta(minutes=10), 10, per_minute=10, seed=3))  # fmt: skip


def test_a_detected_deploy_records_what_served_just_before_as_its_previous_version(t0):
    stopped_canary_then_new(t0)
    created = events.detect_deploys(now=t0 + timedelta(minutes=20))
    assert [(d.version, d.previous_version) for d in created] == [
        ("1.2.0", "1.0.0"),
        # Not 1.2.0, the last deploy recorded: it had stopped serving 5 minutes before.
        ("1.3.0", "1.0.0"),
    ]
    assert all(d.rollback_of_id is None for d in created)


def test_serving_now_is_what_serves_not_the_latest_deploy(t0):
    stopped_canary_then_new(t0)
    events.detect_deploys(now=t0 + timedelta(minutes=20))
    serving = events.serving_now(now=t0 + timedelta(minutes=20))["shop"]
    assert serving.versions == ("1.3.0", "1.0.0")
    assert serving.deploy == Deployment.objects.get(version="1.3.0")
    assert serving.version == "1.3.0"


def test_serving_now_after_a_dropped_canary_is_the_old_version(t0):
    store(spans_of("1.0.0", t0 - timedelta(minutes=30), 50),
          spans_of("1.2.0", t0, 5, per_minute=10, seed=2))  # fmt: skip
    events.detect_deploys(now=t0 + timedelta(minutes=20))
    serving = events.serving_now(now=t0 + timedelta(minutes=20))["shop"]
    # What runs is 1.0.0; the dropped canary was recorded as rolled back to it.
    assert serving.versions == ("1.0.0",) and serving.version == "1.0.0"
    canary = Deployment.objects.get(version="1.2.0")
    assert serving.deploy.rollback_of == canary
