"""The flags API: posting changes, listing flags and changes, one change, and the gate."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Deployment
from flags.models import FlagChange
from telemetry import flag_store, ingest
from telemetry.flag_events import Evaluation
from tests.flags.factories import evaluation_traffic
from tests.helpers import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def post_change(client, token, **fields):
    return client.post("/api/v1/flags/changes", fields, content_type="application/json",
                       headers=bearer(token))  # fmt: skip


class TestPostChange:
    def test_it_answers_201_with_the_change(self, client, deploy_token, now):
        response = post_change(client, deploy_token, flag="new-checkout", environment="prod",
                               services=["web"], at=now.isoformat(), actor="ana",
                               description="10% to 50%", url="https://unleash/x",
                               rollout={"on": 50, "off": 50})  # fmt: skip
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["id"] == FlagChange.objects.get().pk
        assert (body["flag"], body["environment"], body["services"]) == (
            "new-checkout", "prod", ["web"],
        )  # fmt: skip
        assert body["rollout"] == {"on": 50.0, "off": 50.0}
        assert body["source"] == "api"
        assert body["verdict"] == "pending"
        assert body["link"].endswith(f"/api/v1/flags/changes/{body['id']}")

    def test_a_repeat_answers_200(self, client, deploy_token, now):
        post_change(client, deploy_token, flag="f", at=now.isoformat())
        assert post_change(client, deploy_token, flag="f", at=now.isoformat()).status_code == 200

    def test_it_needs_the_deploy_scope(self, client, read_token):
        assert post_change(client, read_token, flag="f").status_code == 403
        assert post_change(client, None, flag="f").status_code == 401

    def test_a_flag_is_required(self, client, deploy_token):
        assert post_change(client, deploy_token, actor="x").status_code == 422


class TestControlOverride:
    def test_it_sets_the_control_of_the_next_changes(self, client, deploy_token, read_token):
        def put(token, control):
            return client.put("/api/v1/flags/control", {"flag": "f", "control": control},
                              content_type="application/json", headers=bearer(token))  # fmt: skip

        assert put(deploy_token, "v2").status_code == 200
        body = post_change(client, deploy_token, flag="f").json()
        assert (body["control"], body["control_reason"]) == ("v2", "set for this flag")
        assert put(read_token, "x").status_code == 403


class TestReads:
    def test_flags_list_services_variants_shares_and_the_last_change(
        self, client, read_token, deploy_token, now
    ):
        rows = evaluation_traffic("new-checkout", now - timedelta(minutes=5), minutes=5,
                                  per_minute=60, shares={"on": 0.2, "off": 0.8})  # fmt: skip
        ingest.store_rows(rows)
        post_change(client, deploy_token, flag="new-checkout", at=now.isoformat())
        response = client.get("/api/v1/flags", headers=bearer(read_token))
        assert response.status_code == 200
        [flag] = response.json()
        assert (flag["flag"], flag["services"], flag["variants"]) == (
            "new-checkout", ["web"], ["off", "on"],
        )  # fmt: skip
        assert flag["evaluations"] == 300
        assert sum(flag["shares"].values()) == pytest.approx(1.0)
        assert flag["shares"]["on"] == pytest.approx(0.2, abs=0.07)
        assert flag["last_change"]["flag"] == "new-checkout"
        assert flag["verdict"] == "pending"

    def test_changes_are_filtered_and_newest_first(self, client, read_token, deploy_token, now):
        for minutes, flag, services in ((30, "a", ["web"]), (20, "a", ["api"]), (10, "b", [])):
            post_change(client, deploy_token, flag=flag, services=services,
                        at=(now - timedelta(minutes=minutes)).isoformat())  # fmt: skip

        def flags_of(query: str):
            response = client.get(f"/api/v1/flags/changes{query}", headers=bearer(read_token))
            return [(c["flag"], c["services"]) for c in response.json()]

        assert flags_of("") == [("b", []), ("a", ["api"]), ("a", ["web"])]
        assert flags_of("?flag=a") == [("a", ["api"]), ("a", ["web"])]
        assert flags_of("?service=web") == [("a", ["web"])]
        since = (now - timedelta(minutes=25)).isoformat().replace("+00:00", "Z")
        assert flags_of(f"?since={since}") == [("b", []), ("a", ["api"])]

    def test_one_change_says_its_verdict_is_pending_and_why(self, client, read_token,
                                                           deploy_token):  # fmt: skip
        change_id = post_change(client, deploy_token, flag="f").json()["id"]
        response = client.get(f"/api/v1/flags/changes/{change_id}", headers=bearer(read_token))
        body = response.json()
        assert body["verdict"] == "pending"
        assert "first look" in body["verdict_reason"]
        for key in ("verdict_history", "findings", "budget_impact", "suspects"):
            assert body[key] == []
        assert client.get("/api/v1/flags/changes/999999",
                          headers=bearer(read_token)).status_code == 404  # fmt: skip


class TestGate:
    def gate(self, client, token, flag):
        return client.get(f"/api/v1/gate?flag={flag}", headers=bearer(token))

    def test_a_flag_whose_latest_change_failed_may_not_widen(self, client, read_token, now):
        FlagChange.objects.create(flag="f", at=now - timedelta(hours=1), verdict="pass")
        FlagChange.objects.create(flag="f", at=now, verdict="fail",
                                  verdict_reason="errors on /checkout in on")  # fmt: skip
        response = self.gate(client, read_token, "f")
        assert response.status_code == 409
        body = response.json()
        assert (body["flag"], body["allow"]) == ("f", False)
        assert "errors on /checkout in on" in body["reasons"][0]

    def test_an_earlier_failure_does_not_block(self, client, read_token, now):
        FlagChange.objects.create(flag="f", at=now - timedelta(hours=1), verdict="fail")
        FlagChange.objects.create(flag="f", at=now, verdict="pending")
        assert self.gate(client, read_token, "f").status_code == 200

    def test_a_flag_without_a_failed_change_may_widen(self, client, read_token, now):
        FlagChange.objects.create(flag="f", at=now, verdict="pass")
        response = self.gate(client, read_token, "f")
        assert response.status_code == 200
        assert response.json() == {"service": "", "flag": "f", "allow": True, "reasons": []}

    def test_an_evaluated_flag_is_known(self, client, read_token, now):
        flag_store.store_evaluations([Evaluation(
            trace_id=b"", span_id=b"", service="web", environment="", at=now,
            flag="dark-launch", cohort="off",
        )])  # fmt: skip
        assert self.gate(client, read_token, "dark-launch").status_code == 200

    def test_an_unknown_flag_is_404_with_the_closest_names(self, client, read_token, now):
        FlagChange.objects.create(flag="new-checkout", at=now)
        response = self.gate(client, read_token, "new-chekout")
        assert response.status_code == 404
        assert "Did you mean new-checkout?" in response.json()["detail"]

    def test_the_service_gate_is_unchanged(self, client, read_token):
        Deployment.objects.create(service="web", version="1", verdict="pass")
        response = client.get("/api/v1/gate?service=web", headers=bearer(read_token))
        assert response.status_code == 200
        assert response.json()["service"] == "web"

    def test_it_needs_a_service_or_a_flag(self, client, read_token):
        assert client.get("/api/v1/gate", headers=bearer(read_token)).status_code == 422
