from datetime import timedelta

import pytest
from django.utils import timezone

from slo.models import SLO, Alert
from tests.slo.factories import add_minutes, counted_since, make_slo

pytestmark = pytest.mark.django_db

DEFINITION = {
    "name": "checkout-latency",
    "service": "checkout",
    "route": "/api/*",
    "sli": "latency",
    "threshold_ms": 300,
    "objective": 99.5,
    "window": "28d",
}


def test_it_creates_an_slo_with_the_deploy_scope(client, deployer):
    response = client.post("/api/v1/slos", DEFINITION, content_type="application/json",
                           headers=deployer)  # fmt: skip

    assert response.status_code == 201
    body = response.json()
    assert body["span_kind"] == "server" and body["budgeting"] == "occurrences"
    assert body["threshold_ms"] == 300 and body["objective"] == 99.5
    assert SLO.objects.get().route == "/api/*"


def test_it_refuses_writes_with_the_read_scope(client, reader):
    response = client.post("/api/v1/slos", DEFINITION, content_type="application/json",
                           headers=reader)  # fmt: skip

    assert response.status_code == 403
    assert not SLO.objects.exists()


def test_it_refuses_reads_without_a_token(client, db):
    assert client.get("/api/v1/slos").status_code == 401


def test_it_explains_invalid_definitions(client, deployer):
    bad = {**DEFINITION, "window": "fortnight", "threshold_ms": None}

    response = client.post("/api/v1/slos", bad, content_type="application/json", headers=deployer)

    assert response.status_code == 422
    assert "window" in response.json()["detail"] and "threshold" in response.json()["detail"]


def test_it_updates_and_deletes(client, deployer):
    slo = make_slo()
    changed = {"name": slo.name, "service": "checkout", "objective": 99.99, "window": "7d"}

    response = client.put(f"/api/v1/slos/{slo.pk}", changed, content_type="application/json",
                          headers=deployer)  # fmt: skip
    assert response.status_code == 200
    slo.refresh_from_db()
    assert (str(slo.objective), slo.window) == ("99.99000", "7d")

    assert client.delete(f"/api/v1/slos/{slo.pk}", headers=deployer).status_code == 204
    assert not SLO.objects.exists()


def test_it_lists_slos(client, reader):
    make_slo(name="b")
    make_slo(name="a")

    response = client.get("/api/v1/slos", headers=reader)

    assert [slo["name"] for slo in response.json()] == ["a", "b"]


def test_status_returns_everything_the_on_call_engineer_needs(
    client, reader, django_assert_max_num_queries
):
    slo = make_slo(window="30d")
    now = timezone.now()
    counted_since(slo, now - timedelta(days=31))  # served for longer than the window
    add_minutes(slo, now.replace(second=0, microsecond=0) - timedelta(minutes=30), 30,
                good=990, total=1_000)  # fmt: skip
    Alert.objects.create(
        slo=slo, severity="page", long_window=timedelta(hours=1), short_window=timedelta(minutes=5),
        threshold=14.4, long_burn_rate=10, short_burn_rate=10, budget_consumed_pct=1,
        fired_at=now, last_evaluated_at=now,
    )  # fmt: skip

    # Two of them authenticate: the token, and its rate-limit bucket.
    with django_assert_max_num_queries(7):
        response = client.get(f"/api/v1/slos/{slo.pk}", headers=reader)

    body = response.json()
    assert body["sli"] == {"value": pytest.approx(0.99), "good": 29_700, "total": 30_000,
                           "unit": "events"}  # fmt: skip
    assert body["objective"] == 99.9
    assert body["budget_total"] == pytest.approx(30)
    assert body["budget_consumed"] == 300
    assert body["budget_remaining_pct"] == pytest.approx(-900)
    assert body["budget_consumed_pct"] == pytest.approx(1_000)
    assert (body["budget_projected"], body["learning"]) == (False, False)
    assert set(body["burn_rates"]) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert body["burn_rates"]["5m"] == pytest.approx(10)
    assert body["time_to_exhaustion"] == 0
    assert [alert["windows"] for alert in body["alerts"]] == ["1h/5m"]
    (page,) = [tier for tier in body["tiers"] if tier["firing"]]
    assert (page["windows"], page["long_burn_rate"]) == ("1h/5m", pytest.approx(10))
    assert page["calm_since"] is None  # no pass has seen its tier calm yet
    assert sum(p["good"] for p in body["sli_history"]) == 29_700
    assert body["budget_history"][0]["remaining_pct"] == 100
    assert body["budget_history"][-1]["remaining_pct"] == pytest.approx(-900)


def test_openslo_round_trips_through_the_api(client, deployer):
    make_slo(name="orders", window="month", timezone="Europe/Madrid")
    exported = client.get("/api/v1/slos/openslo", headers=deployer)
    assert exported["Content-Type"] == "application/yaml"
    before = [s.definition() for s in SLO.objects.all()]
    SLO.objects.all().delete()

    response = client.post("/api/v1/slos/openslo", exported.content,
                           content_type="application/yaml", headers=deployer)  # fmt: skip

    assert response.json() == {"imported": ["orders"]}
    assert [s.definition() for s in SLO.objects.all()] == before


def test_openslo_import_refusals_name_the_field(client, deployer):
    response = client.post("/api/v1/slos/openslo", "apiVersion: openslo/v1\nkind: Service\n---\n"
                           "apiVersion: openslo/v1\nkind: AlertPolicy\n",
                           content_type="application/yaml", headers=deployer)  # fmt: skip

    assert response.status_code == 400
    assert response.json()["detail"].startswith("documents[1].kind")
