"""Every page and JSON endpoint, through the Django test client."""

import pytest
from django.urls import reverse
from django.utils import timezone

from telemetry.models import ServiceDay
from tests.dashboard.factories import XSS


def _urls(world) -> list[str]:
    return [
        reverse("dashboard:overview"),
        reverse("dashboard:overview-json"),
        reverse("dashboard:service", args=["checkout"]),
        reverse("dashboard:service-json", args=["checkout"]),
        reverse("dashboard:budgets"),
        reverse("dashboard:budgets-json"),
        reverse("dashboard:slo", args=[world.slo.pk]),
        reverse("dashboard:slo-json", args=[world.slo.pk]),
        reverse("dashboard:deploys"),
        reverse("dashboard:deploys-json"),
        reverse("dashboard:deploy", args=[world.failed_deploy.pk]),
        reverse("dashboard:deploy-json", args=[world.failed_deploy.pk]),
        reverse("dashboard:traces"),
        reverse("dashboard:traces-json"),
        reverse("dashboard:trace", args=[world.trace_id]),
        reverse("dashboard:trace-json", args=[world.trace_id]),
    ]


def test_every_page_and_endpoint_answers(viewer_client, world):
    for url in _urls(world):
        for range_name in ("", "?range=1h", "?range=30d"):
            response = viewer_client.get(url + range_name)
            assert response.status_code == 200, url


def test_pages_redirect_to_login_and_json_answers_401(client, world):
    for url in _urls(world):
        response = client.get(url)
        if url.endswith(".json"):
            assert response.status_code == 401, url
        else:
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url


def test_login_page_logs_in(client, viewer):
    response = client.post("/login/", {"username": "viewer", "password": "a-long-test-password"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_logout_needs_a_post(viewer_client):
    assert viewer_client.post("/logout/").status_code == 302
    assert viewer_client.get("/").status_code == 302


@pytest.mark.parametrize(
    "name",
    ["dashboard:overview", "dashboard:traces", "dashboard:budgets", "dashboard:deploys"],
)
def test_hostile_text_never_reaches_the_page_unescaped(viewer_client, world, name):
    body = viewer_client.get(reverse(name)).content.decode()
    assert "<script>alert(1)" not in body
    assert "<img src=x" not in body


def test_trace_page_escapes_span_names_attributes_and_events(viewer_client, world):
    body = viewer_client.get(reverse("dashboard:trace", args=[world.trace_id])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(2)&gt;" in body
    assert "cache &lt;miss&gt;" in body
    assert "<script>alert(1)" not in body and "<img src=x" not in body


def test_deploy_page_embeds_hostile_reasons_as_escaped_json(viewer_client, world):
    url = reverse("dashboard:deploy", args=[world.failed_deploy.pk])
    body = viewer_client.get(url).content.decode()
    assert "\\u003Cscript\\u003Ealert(1)\\u003C/script\\u003E" in body
    assert XSS not in body


def test_a_service_named_with_a_slash_has_a_page(viewer_client, world):
    # Namespaced service names such as "team/api" are common in OTel resources.
    now = timezone.now()
    ServiceDay.objects.create(
        service="team/api", service_version="1", day=now.date(), span_count=1,
        first_seen=now, last_seen=now,
    )  # fmt: skip
    for name in ("dashboard:service", "dashboard:service-json"):
        url = reverse(name, args=["team/api"])
        assert viewer_client.get(url).status_code == 200, url
