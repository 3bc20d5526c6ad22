import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from slo import openslo
from slo.models import SLO
from tests.slo.factories import make_slo

pytestmark = pytest.mark.django_db

SEPARATE_SLI = """
apiVersion: openslo/v1
kind: SLI
metadata:
  name: search-latency
spec:
  thresholdMetric:
    metricSource:
      type: monoenv
      spec: {service: search, route: "/search*", requireSuccess: true}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: search-fast
  displayName: Search is fast
spec:
  service: search
  indicatorRef: search-latency
  timeWindow:
    - duration: 1w
      calendar: {startTime: "2024-01-01 00:00:00", timeZone: Europe/Madrid}
  budgetingMethod: Timeslices
  objectives:
    - op: lte
      value: 250
      target: 0.95
      timeSliceTarget: 0.99
      timeSliceWindow: 1m
"""

PROMETHEUS = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: web-availability}
spec:
  service: web
  indicator:
    metadata: {name: web-errors}
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec: {query: 'sum(rate(http_requests_total{code!~"5.."}[1m]))'}
        total:
          metricSource:
            type: Prometheus
            spec: {query: 'sum(rate(http_requests_total[1m]))'}
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.999}]
"""


def _definitions():
    return [slo.definition() for slo in SLO.objects.order_by("name")]


def test_export_then_import_gives_equal_slos(tmp_path):
    make_slo(name="orders", route="/api/orders/*", window="28d", display_name="Orders")
    make_slo(
        name="orders-latency", sli="latency", threshold_ms="312.5", latency_requires_success=True,
        objective="99.5", window="month", timezone="Europe/Madrid", budgeting="timeslices",
        timeslice_target="97.5", span_kind="client",
    )  # fmt: skip
    before = _definitions()
    path = tmp_path / "slos.yaml"
    exported = io.StringIO()
    call_command("openslo", "export", stdout=exported)
    path.write_text(exported.getvalue())
    SLO.objects.all().delete()

    call_command("openslo", "import", str(path), stdout=io.StringIO())

    assert _definitions() == before


def test_it_imports_slos_with_separate_sli_documents():
    (definition,) = openslo.parse(openslo.load_yaml(SEPARATE_SLI))

    assert definition == {
        "name": "search-fast",
        "display_name": "Search is fast",
        "service": "search",
        "route": "/search*",
        "span_kind": "server",
        "sli": "latency",
        "threshold_ms": Decimal("250"),
        "latency_requires_success": True,
        "objective": Decimal("95.00"),
        "window": "week",
        "timezone": "Europe/Madrid",
        "budgeting": "timeslices",
        "timeslice_target": Decimal("99.00"),
    }


def test_it_refuses_a_prometheus_source_naming_the_field():
    with pytest.raises(openslo.OpenSLOError) as refusal:
        openslo.parse(openslo.load_yaml(PROMETHEUS))

    assert refusal.value.field == (
        "documents[0].spec.indicator.spec.ratioMetric.good.metricSource.type"
    )
    assert "'Prometheus' is not supported" in str(refusal.value)


def test_it_refuses_a_composite_slo_naming_the_field():
    composite = PROMETHEUS.replace(
        "objectives: [{target: 0.999}]",
        "objectives: [{target: 0.999, compositeWeight: 1, indicatorRef: a}]",
    )

    with pytest.raises(openslo.OpenSLOError, match=r"objectives\[0\].compositeWeight"):
        openslo.parse(openslo.load_yaml(composite))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("Occurrences", "RatioTimeslices"), "documents[0].spec.budgetingMethod"),
        (("duration: 28d, isRolling: true", "duration: 1Q, isRolling: true"),
         "documents[0].spec.timeWindow[0].duration"),
        (("apiVersion: openslo/v1", "apiVersion: openslo/v2alpha"), "documents[0].apiVersion"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(change, field):
    document = PROMETHEUS.replace("type: Prometheus", "type: monoenv").replace(*change)

    with pytest.raises(openslo.OpenSLOError) as refusal:
        openslo.parse(openslo.load_yaml(document))

    assert refusal.value.field == field


def test_a_multi_document_file_imports_all_or_nothing(tmp_path):
    good = SEPARATE_SLI
    bad_objective = SEPARATE_SLI.replace("search-fast", "search-broken").replace(
        "target: 0.95", "target: 1.5"
    )
    path = tmp_path / "slos.yaml"
    path.write_text(good + "\n---\n" + bad_objective)

    with pytest.raises(CommandError, match=r"\[1\] objective"):
        call_command("openslo", "import", str(path))

    assert not SLO.objects.exists()


def test_the_command_names_the_refused_field(tmp_path):
    path = tmp_path / "slos.yaml"
    path.write_text(PROMETHEUS)

    with pytest.raises(CommandError, match="metricSource.type"):
        call_command("openslo", "import", str(path))
