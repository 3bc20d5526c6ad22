from datetime import timedelta

import pytest

from deployments import events
from deployments.models import Deployment, DeploySource, DeployStatus
from tests.deployments.conftest import store, traffic

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
    assert deploy.next_checkpoint == 5
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
