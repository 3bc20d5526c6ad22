"""The demo, run for real against a live server: labelled services, deploys and SLOs."""

from io import StringIO

import pytest
from django.core.management import call_command

from deployments.models import Deployment
from slo.models import SLO
from telemetry import demo
from telemetry.models import Span

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_sends_labelled_services_deploys_and_slos(live_server, make_token):
    out = StringIO()

    call_command(
        "simulate", "--endpoint", live_server.url, "--api", live_server.url,
        "--token", make_token("ingest"), "--api-token", make_token("deploy", "read"),
        "--backfill", "2", "--once", "--rate", "2", "--seed", "7", stdout=out,
    )  # fmt: skip

    services = set(Span.objects.values_list("service", flat=True).distinct())
    assert services == {"demo-frontend", "demo-checkout", "demo-payments", "demo-inventory"}
    assert all(demo.is_demo(service) for service in services)
    resources = Span.objects.values_list("resource_attributes", flat=True)[:50]
    assert all(resource[demo.DEMO_RESOURCE_ATTRIBUTE] is True for resource in resources)
    # Minute 1 of the cycle deploys checkout through the API.
    assert Deployment.objects.filter(service="demo-checkout", deployer="simulator").exists()
    slos = {slo.name: slo.service for slo in SLO.objects.all()}
    assert slos == {
        "demo-checkout-availability": "demo-checkout",
        "demo-frontend-latency": "demo-frontend",
    }
    assert "defined SLO demo-frontend-latency" in out.getvalue()


def test_the_demo_defines_its_slos_once(live_server, make_token):
    tokens = ["--token", make_token("ingest"), "--api-token", make_token("deploy", "read")]
    for _ in range(2):
        call_command(
            "simulate", "--endpoint", live_server.url, "--api", live_server.url, *tokens,
            "--backfill", "0", "--once", stdout=StringIO(),
        )  # fmt: skip

    assert SLO.objects.count() == 2


def test_the_demo_needs_no_development_packages():
    # Its SDK and exporters are runtime dependencies of Monoenv itself.
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"])
    for package in ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "requests"):
        assert package in runtime
