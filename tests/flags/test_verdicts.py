"""Per-variant verdicts: a cohort with a regression fails against its control; a clean one does not.

Ground truth is built in: at 10 requests/s, the `on` cohort (10%) gets the
stated error rate and latency, the control the baseline ones.
"""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from flags import changes, verdicts
from flags.models import ChangeSource, FlagChange
from telemetry import flag_store, ingest
from tests.flags.factories import evaluation_event, span_row, with_events

pytestmark = pytest.mark.django_db


def rollout_traffic(start, *, minutes, on_error_rate, on_slowdown=1.0, seed=3):
    """10 req/s over two routes; 10% of requests evaluate new-checkout=on."""
    rng = random.Random(seed)
    rows = []
    for index in range(minutes * 600):
        at = start + timedelta(seconds=index / 10)
        variant = "on" if rng.random() < 0.1 else "off"
        error_rate = on_error_rate if variant == "on" else 0.01
        slowdown = on_slowdown if variant == "on" else 1.0
        route = ("GET /cart", "POST /checkout")[index % 2]
        row = span_row(service="shop", version="7", start=at, route=route,
                       duration_ms=40 * rng.lognormvariate(0, 0.3) * slowdown,
                       error=rng.random() < error_rate, rng=rng)  # fmt: skip
        rows.append(with_events(row, [evaluation_event("new-checkout", at, variant=variant)]))
    ingest.store_rows(rows)
    flag_store.store_from_span_rows(rows)


@pytest.fixture
def change_at():
    return (timezone.now() - timedelta(minutes=40)).replace(second=0, microsecond=0)


def posted_change(change_at) -> FlagChange:
    change, _ = changes.record_change(
        {"flag": "new-checkout", "at": change_at, "services": ["shop"]}, source=ChangeSource.API
    )
    return change


def test_an_errors_regression_in_the_cohort_fails_and_is_notified_once(change_at):
    from notifications.models import Delivery, WebhookTarget

    WebhookTarget.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    rollout_traffic(change_at, minutes=16, on_error_rate=0.20)
    change = posted_change(change_at)
    assert change.control == "off"
    result = verdicts.run_look(change.pk, 15)
    change.refresh_from_db()
    assert change.verdict == "fail"
    assert "new-checkout=on" in change.verdict_reason
    failing = change.findings.filter(significant=True)
    assert failing.exists()
    assert {f.variant for f in failing} == {"on"}
    assert result.checkpoint
    verdicts.run_look(change.pk, 15)
    [delivery] = Delivery.objects.all()
    assert delivery.event == "flag_verdict"
    assert "new-checkout=on" in str(delivery.payload)


def test_a_clean_rollout_does_not_fail(change_at):
    rollout_traffic(change_at, minutes=16, on_error_rate=0.01)
    change = posted_change(change_at)
    for minute in (1, 2, 3, 5, 10, 15):
        verdicts.run_look(change.pk, minute)
    change.refresh_from_db()
    assert change.verdict != "fail"
    assert not change.findings.filter(significant=True).exists()


def test_due_looks_are_taken_once(change_at):
    rollout_traffic(change_at, minutes=6, on_error_rate=0.20)
    change = posted_change(change_at)
    now = change_at + timedelta(minutes=5, seconds=40)
    assert verdicts.evaluate_due(now=now) == 1
    assert verdicts.evaluate_due(now=now) == 0
    change.refresh_from_db()
    assert change.next_look == 6


def test_the_change_shows_its_history_and_findings(client, make_token, change_at):
    from tests.helpers import bearer

    rollout_traffic(change_at, minutes=16, on_error_rate=0.20)
    change = posted_change(change_at)
    verdicts.run_look(change.pk, 15)
    body = client.get(f"/api/v1/flags/changes/{change.pk}",
                      headers=bearer(make_token("read"))).json()  # fmt: skip
    assert body["verdict"] == "fail"
    assert [(r["minute"], r["verdict"]) for r in body["verdict_history"]] == [(15, "fail")]
    significant = [f for f in body["findings"] if f["significant"]]
    assert significant and all(f["variant"] == "on" for f in significant)
    assert {f["metric"] for f in significant} >= {"error_rate"}
