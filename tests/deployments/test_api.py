import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Deployment, DeploySource, Verdict
from slo.models import SLO, Alert, Severity, SLOMinute
from tests.deployments.conftest import store, traffic
from tests.helpers import bearer

pytestmark = pytest.mark.django_db
SECRET = "s3cret"


def post(client, token, **body):
    return client.post(
        "/api/v1/deployments", data=json.dumps(body), content_type="application/json",
        headers=bearer(token),
    )  # fmt: skip


def test_posting_a_deploy_answers_201_with_its_id(client, deploy_token):
    response = post(client, deploy_token, service="checkout", version="1.4.0",
                    commit_sha="abc", deployer="ana", url="https://ci/1")  # fmt: skip
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == Deployment.objects.get().pk
    # No environment posted and no span yet to name one: not known yet.
    assert body["environment"] == "" and body["status"] == "succeeded"
    assert body["source"] == "api" and body["verdict"] == "pending"
    assert body["started_at"] and body["finished_at"]


def test_posting_again_within_an_hour_updates_the_same_deploy(client, deploy_token):
    first = post(client, deploy_token, service="checkout", version="1.4.0").json()
    again = post(client, deploy_token, service="checkout", version="1.4.0", status="failed")
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["status"] == "failed"
    assert Deployment.objects.count() == 1


def test_posting_needs_the_deploy_scope(client, read_token):
    assert post(client, read_token, service="a", version="1").status_code == 403
    assert post(client, None, service="a", version="1").status_code == 401


def test_posting_rejects_an_unknown_status(client, deploy_token):
    response = post(client, deploy_token, service="a", version="1", status="great")
    assert response.status_code == 422


def test_the_list_is_newest_first_and_filters(client, read_token):
    now = timezone.now()
    for minutes, service in ((30, "a"), (10, "b"), (20, "a"), (300, "a")):
        Deployment.objects.create(
            service=service, version=str(minutes), started_at=now - timedelta(minutes=minutes)
        )
    response = client.get("/api/v1/deployments", headers=bearer(read_token))
    assert [d["version"] for d in response.json()] == ["10", "20", "30", "300"]
    since = (now - timedelta(hours=1)).isoformat()
    response = client.get(
        "/api/v1/deployments", {"service": "a", "since": since}, headers=bearer(read_token)
    )
    assert [d["version"] for d in response.json()] == ["20", "30"]


def test_the_detail_has_verdict_findings_budget_impact_and_suspects(client, read_token):
    deploy = Deployment.objects.create(service="checkout", version="2", verdict=Verdict.PENDING)
    SLO.objects.create(name="checkout-availability", service="checkout", objective=99.9)
    response = client.get(f"/api/v1/deployments/{deploy.pk}", headers=bearer(read_token))
    assert response.status_code == 200
    body = response.json()
    assert body["verdict"] == "pending"
    assert body["findings"] == [] and body["suspects"] == [] and body["verdict_history"] == []
    [impact] = body["budget_impact"]
    assert impact["slo"] == "checkout-availability" and impact["bad"] == 0
    assert client.get("/api/v1/deployments/999999", headers=bearer(read_token)).status_code == 404


def github_body(state="success", **payload):
    return json.dumps({
        "action": "created",
        "deployment_status": {"state": state, "created_at": "2025-03-01T10:05:00Z",
                              "target_url": "https://github.com/o/shop/actions/runs/1"},
        "deployment": {"sha": "0123456789abcdef", "environment": "production",
                       "created_at": "2025-03-01T10:00:00Z", "payload": payload,
                       "creator": {"login": "octocat"}, "description": "ship it"},
        "repository": {"name": "shop", "full_name": "o/shop"},
    }).encode()  # fmt: skip


def github_post(client, body, signature, event="deployment_status"):
    return client.post(
        "/api/v1/webhooks/github", data=body, content_type="application/json",
        headers={"X-GitHub-Event": event, "X-Hub-Signature-256": signature},
    )  # fmt: skip


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_signed_github_deployment_status_records_a_deploy(client, settings):
    settings.MONOENV_GITHUB_WEBHOOK_SECRET = SECRET
    body = github_body(version="1.2.3")
    response = github_post(client, body, sign(body))
    assert response.status_code == 200
    deploy = Deployment.objects.get()
    assert (deploy.service, deploy.version, deploy.source) == ("shop", "1.2.3", DeploySource.GITHUB)
    assert deploy.commit_sha == "0123456789abcdef" and deploy.deployer == "octocat"
    assert deploy.status == "succeeded"
    assert deploy.finished_at - deploy.started_at == timedelta(minutes=5)
    # The same deployment's next status updates it.
    failed = github_body(state="failure", version="1.2.3")
    assert github_post(client, failed, sign(failed)).status_code == 200
    assert Deployment.objects.get().status == "failed"


def test_a_bad_github_signature_gets_401(client, settings):
    settings.MONOENV_GITHUB_WEBHOOK_SECRET = SECRET
    body = github_body()
    assert github_post(client, body, sign(body, "wrong")).status_code == 401
    assert github_post(client, body, "").status_code == 401
    tampered = body.replace(b"shop", b"shoq")
    assert github_post(client, tampered, sign(body)).status_code == 401
    assert not Deployment.objects.exists()


def test_github_ping_and_inactive_statuses_record_nothing(client, settings):
    settings.MONOENV_GITHUB_WEBHOOK_SECRET = SECRET
    assert github_post(client, b"{}", sign(b"{}"), event="ping").status_code == 200
    body = github_body(state="inactive")
    assert github_post(client, body, sign(body)).status_code == 202
    assert not Deployment.objects.exists()


def gate(client, token, service="checkout"):
    return client.get("/api/v1/gate", {"service": service}, headers=bearer(token))


def test_the_gate_allows_a_healthy_service(client, read_token):
    Deployment.objects.create(service="checkout", version="1", verdict=Verdict.PASS)
    response = gate(client, read_token)
    assert response.status_code == 200
    assert response.json() == {"service": "checkout", "allow": True, "reasons": []}


def test_the_gate_refuses_after_a_failed_deploy(client, read_token):
    Deployment.objects.create(
        service="checkout", version="2", verdict=Verdict.FAIL, verdict_reason="errors rose."
    )
    response = gate(client, read_token)
    assert response.status_code == 409
    body = response.json()
    assert body["allow"] is False
    [reason] = body["reasons"]
    assert "The latest deploy, 2" in reason and "errors rose." in reason
    Deployment.objects.create(service="other", version="1", verdict=Verdict.PASS)
    assert gate(client, read_token, service="other").status_code == 200


def test_the_gate_refuses_when_the_budget_is_exhausted(client, read_token):
    slo = SLO.objects.create(name="checkout-availability", service="checkout", objective=99.9)
    minute = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)
    SLOMinute.objects.create(slo=slo, minute=minute, good=900, total=1000)
    # Counted for longer than a day, so the SLO is no longer learning.
    SLOMinute.objects.create(slo=slo, minute=minute - timedelta(days=40), good=1, total=1)
    response = gate(client, read_token)
    assert response.status_code == 409
    [reason] = response.json()["reasons"]
    assert reason.startswith("SLO checkout-availability has exhausted its 30d error budget")


def test_the_gate_refuses_while_a_page_alert_fires(client, read_token):
    slo = SLO.objects.create(name="checkout-availability", service="checkout", objective=99.9)
    now = timezone.now()
    alert_fields = dict(
        slo=slo, long_window=timedelta(hours=1), short_window=timedelta(minutes=5),
        threshold=14.4, long_burn_rate=20.0, short_burn_rate=30.0, budget_consumed_pct=3.0,
        fired_at=now, last_evaluated_at=now,
    )  # fmt: skip
    Alert.objects.create(severity=Severity.TICKET, **{**alert_fields, "long_window": timedelta(1)})
    assert gate(client, read_token).status_code == 200
    Alert.objects.create(severity=Severity.PAGE, **alert_fields)
    response = gate(client, read_token)
    assert response.status_code == 409
    [reason] = response.json()["reasons"]
    assert reason.startswith("Page alert firing on SLO checkout-availability")


def test_the_gate_needs_the_read_scope(client, deploy_token):
    assert gate(client, deploy_token).status_code == 403


def test_the_gate_refuses_a_typo_and_names_the_closest_services(client, read_token, t0):
    store(*(traffic(service=service, version="1", start=t0, minutes=1, per_minute=10, seed=seed)
            for seed, service in enumerate(("shop-flask", "shop-flash", "payments"))))  # fmt: skip
    response = gate(client, read_token, service="shop-flsk")
    assert response.status_code == 404
    detail = response.json()["detail"]
    # difflib's ratio 2M/T to "shop-flsk": shop-flask matches "shop-fl" and "sk", 2·9/19 = 0.95;
    # shop-flash "shop-fl" and "s", 2·8/19 = 0.84; payments one letter, 2/17 = 0.12 < 0.6.
    assert detail.startswith("Unknown service 'shop-flsk'. Did you mean shop-flask or shop-flash?")
    assert gate(client, read_token, service="shop-flask").status_code == 200


def test_the_gate_lists_the_known_services_when_none_is_close(client, read_token):
    Deployment.objects.create(service="billing", version="1", verdict=Verdict.PASS)
    response = gate(client, read_token, service="zzz")
    assert response.status_code == 404
    assert "Known services: billing." in response.json()["detail"]


def test_a_service_with_only_an_slo_is_known_to_the_gate(client, read_token):
    SLO.objects.create(name="search-availability", service="search", objective=99.9)
    assert gate(client, read_token, service="search").status_code == 200


def test_the_gate_refuses_an_environment_one_letter_from_a_known_one(client, read_token):
    Deployment.objects.create(
        service="checkout", version="2", environment="prod", verdict=Verdict.FAIL
    )
    answer = client.get("/api/v1/gate", {"service": "checkout", "environment": "prd"},
                        headers=bearer(read_token))  # fmt: skip
    # "prd" against "prod": 2·3/7 = 0.86 ≥ 0.6, so a typo, not a new environment.
    assert answer.status_code == 404
    assert answer.json()["detail"].startswith("Unknown environment 'prd' for checkout.")
    # A new environment far from any known one is allowed: its first deploy has to pass.
    staging = client.get("/api/v1/gate", {"service": "checkout", "environment": "staging"},
                         headers=bearer(read_token))  # fmt: skip
    assert staging.status_code == 200
