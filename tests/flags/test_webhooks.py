"""Webhooks of Unleash, Flagsmith and LaunchDarkly: signatures, and the fields they map to.

Signatures are computed here with hmac from the systems' documented
constructions; payloads follow the shapes their documentation shows.
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from flags.models import FlagChange

pytestmark = pytest.mark.django_db

SECRET = "webhook-secret-for-tests"


@pytest.fixture(autouse=True)
def _secrets(settings):
    settings.MONOENV_UNLEASH_WEBHOOK_SECRET = SECRET
    settings.MONOENV_FLAGSMITH_WEBHOOK_SECRET = SECRET
    settings.MONOENV_LAUNCHDARKLY_WEBHOOK_SECRET = SECRET


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, path: str, payload: dict, headers: dict):
    body = json.dumps(payload).encode()
    headers = {key: value(body) if callable(value) else value for key, value in headers.items()}
    return client.post(path, body, content_type="application/json", headers=headers)


UNLEASH_STRATEGY_UPDATE = {
    "id": 4211,
    "type": "feature-strategy-update",
    "createdBy": "ana@example.com",
    "createdAt": "2026-05-04T12:00:30.000Z",
    "featureName": "new-checkout",
    "project": "default",
    "environment": "production",
    "data": {"name": "flexibleRollout",
             "parameters": {"rollout": "50", "stickiness": "default", "groupId": "new-checkout"}},
    "preData": {"name": "flexibleRollout", "parameters": {"rollout": "10"}},
}  # fmt: skip

FLAGSMITH_FLAG_UPDATED = {
    "event_type": "FLAG_UPDATED",
    "data": {
        "changed_by": "Ben",
        "timestamp": "2026-05-04T12:00:30.595298Z",
        "new_state": {
            "enabled": True,
            "environment": {"id": 23, "name": "Production"},
            "feature": {"id": 7168, "name": "butter_bar", "type": "MULTIVARIATE"},
            "feature_segment": None,
            "feature_state_value": "big",
            "identity": None,
            "identity_identifier": None,
            "multivariate_feature_state_values": [
                {"multivariate_feature_option": {"value": "small"}, "percentage_allocation": 30},
                {"multivariate_feature_option": {"value": "big"}, "percentage_allocation": 70},
            ],
        },
        "previous_state": {"enabled": False},
    },
}

LAUNCHDARKLY_UPDATE = {
    "_id": "abc",
    "kind": "flag",
    "date": 1777896030000,  # 2026-05-04T12:00:30Z
    "titleVerb": "changed the rollout of",
    "member": {"email": "ana@example.com"},
    "accesses": [{"action": "updateFallthrough",
                  "resource": "proj/default:env/production:flag/new-checkout"}],
    "currentVersion": {
        "key": "new-checkout",
        "variations": [{"value": True, "name": "on"}, {"value": False, "name": "off"}],
        "environments": {"production": {"fallthrough": {"rollout": {"variations": [
            {"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}}},
    },
}  # fmt: skip

AT = datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC)


class TestUnleash:
    PATH = "/api/v1/webhooks/unleash"

    def test_a_strategy_update_is_a_change(self, client):
        response = post(client, self.PATH, UNLEASH_STRATEGY_UPDATE, {"Authorization": SECRET})
        assert response.status_code == 200, response.content
        change = FlagChange.objects.get(pk=response.json()["id"])
        assert (change.flag, change.environment, change.actor, change.at) == (
            "new-checkout", "production", "ana@example.com", AT,
        )  # fmt: skip
        assert change.rollout == {"on": 50.0, "off": 50.0}
        assert change.source == "unleash"
        assert change.description == "Unleash: feature-strategy-update"

    def test_a_bad_or_missing_secret_is_401(self, client):
        assert post(client, self.PATH, UNLEASH_STRATEGY_UPDATE,
                    {"Authorization": "guess"}).status_code == 401  # fmt: skip
        response = post(client, self.PATH, UNLEASH_STRATEGY_UPDATE, {})
        assert response.status_code == 401
        assert "Authorization" in response.json()["detail"]
        assert not FlagChange.objects.exists()

    def test_other_events_are_accepted_and_ignored(self, client):
        response = post(client, self.PATH, {"type": "feature-tagged", "featureName": "x"},
                        {"Authorization": SECRET})  # fmt: skip
        assert response.status_code == 202
        assert not FlagChange.objects.exists()

    def test_an_unset_secret_refuses_everything(self, client, settings):
        settings.MONOENV_UNLEASH_WEBHOOK_SECRET = ""
        response = post(client, self.PATH, UNLEASH_STRATEGY_UPDATE, {"Authorization": ""})
        assert response.status_code == 401


class TestFlagsmith:
    PATH = "/api/v1/webhooks/flagsmith"

    def test_a_flag_update_is_a_change(self, client):
        response = post(client, self.PATH, FLAGSMITH_FLAG_UPDATED, {"X-Flagsmith-Signature": sign})
        assert response.status_code == 200, response.content
        change = FlagChange.objects.get()
        assert (change.flag, change.environment, change.actor) == ("butter_bar", "Production",
                                                                   "Ben")  # fmt: skip
        assert change.at == datetime(2026, 5, 4, 12, 0, 30, 595298, tzinfo=UTC)
        assert change.rollout == {"small": 30.0, "big": 70.0}
        assert change.description == "Flagsmith: FLAG_UPDATED (on, value 'big')"

    def test_a_signature_over_other_bytes_is_401(self, client):
        response = post(client, self.PATH, FLAGSMITH_FLAG_UPDATED,
                        {"X-Flagsmith-Signature": lambda body: sign(body + b" ")})  # fmt: skip
        assert response.status_code == 401
        assert response.json()["detail"] == "bad X-Flagsmith-Signature"

    def test_a_signature_with_another_secret_is_401(self, client):
        response = post(client, self.PATH, FLAGSMITH_FLAG_UPDATED,
                        {"X-Flagsmith-Signature": lambda body: sign(body, "other")})  # fmt: skip
        assert response.status_code == 401

    def test_a_signed_non_json_body_is_400(self, client):
        body = b"not json"
        response = client.post(self.PATH, body, content_type="application/json",
                               headers={"X-Flagsmith-Signature": sign(body)})  # fmt: skip
        assert response.status_code == 400


class TestLaunchDarkly:
    PATH = "/api/v1/webhooks/launchdarkly"

    def test_a_rollout_change_is_a_change(self, client):
        response = post(client, self.PATH, LAUNCHDARKLY_UPDATE, {"X-LD-Signature": sign})
        assert response.status_code == 200, response.content
        change = FlagChange.objects.get()
        assert (change.flag, change.environment, change.actor, change.at) == (
            "new-checkout", "production", "ana@example.com", AT,
        )  # fmt: skip
        assert change.rollout == {"on": 25.0, "off": 75.0}
        assert change.source == "launchdarkly"

    def test_a_bad_signature_is_401(self, client):
        response = post(client, self.PATH, LAUNCHDARKLY_UPDATE, {"X-LD-Signature": "00" * 32})
        assert response.status_code == 401

    def test_events_of_other_kinds_are_ignored(self, client):
        response = post(client, self.PATH, {"kind": "project"}, {"X-LD-Signature": sign})
        assert response.status_code == 202
