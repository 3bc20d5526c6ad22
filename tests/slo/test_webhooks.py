"""Alert notifications: what a firing or resolved alert says, through the outbox."""

from datetime import timedelta

import pytest

from notifications import outbox
from notifications.models import Delivery, WebhookTarget
from slo import evaluation
from slo.models import Alert
from tests.slo.factories import add_minutes, make_slo

pytestmark = pytest.mark.django_db


def _fast_burn(now):
    slo = make_slo(window="30d")
    last = now.replace(second=0, microsecond=0)
    add_minutes(slo, now - timedelta(days=31), 1, good=1, total=1)  # not a young SLO
    add_minutes(slo, last - timedelta(minutes=59), 60, good=90, total=100)
    return slo


def test_it_delivers_an_alert_that_explains_itself(receiver, now):
    WebhookTarget.objects.create(name="ops", url=receiver.url, severities=["page"])
    _fast_burn(now)

    report = evaluation.evaluate_all(now=now)

    assert report.sent == 2  # the two page tiers; tickets are not wanted here
    payload = next(p for p in receiver.received if p["alert"]["long_window"] == "1h")
    assert payload["event"] == "firing"
    assert payload["severity"] == "page"
    assert payload["slo"]["name"] == "checkout-availability"
    assert payload["alert"]["short_window"] == "5m"
    assert payload["alert"]["long_burn_rate"] == pytest.approx(100)
    # 600 bad events where 0.1% of 6,000 allows 6: the budget is spent 100 times over.
    assert payload["budget_consumed_pct"] == pytest.approx(10_000)
    assert payload["time_to_exhaustion_seconds"] == 0
    assert payload["url"].endswith(f"/api/v1/slos/{payload['slo']['id']}")
    assert "100.0× over 1h" in payload["summary"] and "threshold 14.40×" in payload["summary"]


def test_the_generic_payload_keeps_its_shape(receiver, now):
    WebhookTarget.objects.create(name="ops", url=receiver.url, severities=["page"])
    _fast_burn(now)

    evaluation.evaluate_all(now=now)

    assert set(receiver.received[0]) == {
        "event", "summary", "severity", "slo", "alert", "budget_consumed_pct",
        "budget_remaining_pct", "time_to_exhaustion_seconds", "url",
    }  # fmt: skip
    assert set(receiver.received[0]["alert"]) == {
        "id", "long_window", "short_window", "threshold", "long_burn_rate", "short_burn_rate",
        "fired_at", "resolved_at",
    }  # fmt: skip


def test_each_delivery_names_its_alert_as_subject(receiver, now):
    WebhookTarget.objects.create(name="ops", url=receiver.url)
    _fast_burn(now)

    evaluation.evaluate_all(now=now)

    subjects = set(Delivery.objects.values_list("subject", flat=True))
    assert subjects == {f"slo.alert:{pk}" for pk in Alert.objects.values_list("pk", flat=True)}
    assert len(subjects) == 4  # every tier burns 100×: two pages and two tickets


def test_a_resolved_alert_is_notified_too(receiver, now):
    WebhookTarget.objects.create(name="ops", url=receiver.url, severities=["page"])
    slo = _fast_burn(now)
    evaluation.evaluate_all(now=now)
    later = now + timedelta(hours=7)
    add_minutes(slo, now.replace(second=0) + timedelta(minutes=1), 60 * 7 + 5, good=100, total=100)
    evaluation.evaluate_all(now=later)

    # Seven clean hours: every tier's short window is clean, and five calm minutes later
    # all four resolve.
    report = evaluation.evaluate_all(now=later + timedelta(minutes=5))

    assert len(report.resolved) == 4
    resolved = [p for p in receiver.received if p["event"] == "resolved"]
    assert len(resolved) == 2  # the target takes pages only
    assert all(p["summary"].startswith("[RESOLVED] checkout-availability") for p in resolved)
    assert all(p["alert"]["resolved_at"] for p in resolved)


def test_a_failing_webhook_does_not_stop_the_evaluator(now, settings):
    settings.MONOENV_WEBHOOK_MAX_ATTEMPTS = 2
    settings.MONOENV_WEBHOOK_TIMEOUT_SECONDS = 1
    # Nothing listens on port 9 here: every attempt fails to connect.
    WebhookTarget.objects.create(name="gone", url="http://127.0.0.1:9/hook")
    _fast_burn(now)

    report = evaluation.evaluate_all(now=now)
    outbox.send_due(now=now + timedelta(minutes=1))

    assert report.evaluated == 1 and report.fired
    assert set(Delivery.objects.values_list("status", "attempts")) == {("failed", 2)}


def test_it_shapes_slack_payloads(receiver, now):
    WebhookTarget.objects.create(name="slack", url=receiver.url, kind="slack", severities=["page"])
    _fast_burn(now)

    evaluation.evaluate_all(now=now)

    message = receiver.received[0]
    assert message["text"].startswith("[PAGE] checkout-availability")
    assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    link = message["blocks"][1]["elements"][0]["text"]
    assert "/api/v1/slos/" in link and link.endswith("|checkout-availability>")
