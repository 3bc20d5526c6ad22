"""The outbox: one Delivery per interested target, sent with one retry policy."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings

from notifications import outbox
from notifications.message import Message
from notifications.models import Delivery, WebhookTarget

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)


def _message(severity: str = "page") -> Message:
    return Message(
        event="firing", severity=severity, summary="checkout is burning",
        link="https://monoenv.example.com/x", link_text="checkout", subject="slo.alert:7",
        details={"alert": {"id": 7}},
    )  # fmt: skip


def test_it_queues_one_delivery_per_enabled_target_that_wants_the_severity(receiver):
    pages = WebhookTarget.objects.create(name="pages", url=receiver.url, severities=["page"])
    every = WebhookTarget.objects.create(name="all", url=receiver.url)
    WebhookTarget.objects.create(name="off", url=receiver.url, enabled=False)
    WebhookTarget.objects.create(name="tickets", url=receiver.url, severities=["ticket"])

    queued = outbox.queue(_message("page"), now=NOW)

    assert sorted(d.target_id for d in queued) == [pages.pk, every.pk]
    assert {(d.subject, d.event, d.status, d.attempts) for d in queued} == {
        ("slo.alert:7", "firing", "pending", 0)
    }
    assert all(d.next_attempt_at == NOW for d in queued)
    assert receiver.received == []  # queued, not sent


def test_it_renders_each_delivery_for_its_targets_kind(receiver):
    WebhookTarget.objects.create(name="json", url=receiver.url)
    WebhookTarget.objects.create(name="slack", url=receiver.url, kind="slack")

    json_delivery, slack_delivery = outbox.queue(_message(), now=NOW)

    assert json_delivery.payload["alert"] == {"id": 7}
    assert json_delivery.payload["url"] == "https://monoenv.example.com/x"
    assert set(slack_delivery.payload) == {"text", "blocks"}


def test_a_queued_message_rolls_back_with_its_callers_transaction(receiver):
    from django.db import transaction

    WebhookTarget.objects.create(name="ops", url=receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox.queue(_message(), now=NOW)
        raise RuntimeError("the alert was not saved after all")

    assert not Delivery.objects.exists()


def test_it_sends_what_is_due_and_records_the_answer(receiver):
    WebhookTarget.objects.create(name="ops", url=receiver.url)
    [delivery] = outbox.queue(_message(), now=NOW)

    assert outbox.send_due(now=NOW) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 1, 200)
    assert delivery.sent_at == NOW and delivery.next_attempt_at is None
    assert receiver.received == [delivery.payload]
    assert outbox.send_due(now=NOW + timedelta(hours=1)) == 0  # sent once only


def test_it_retries_with_backoff_then_gives_up(receiver, settings):
    settings.MONOENV_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.statuses = [503, 500, 502]
    WebhookTarget.objects.create(name="ops", url=receiver.url)
    [delivery] = outbox.queue(_message(), now=NOW)

    assert outbox.send_due(now=NOW) == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 503)
    assert "503" in delivery.last_error
    # 30 s after the first failure, then four times as long.
    assert delivery.next_attempt_at == NOW + timedelta(seconds=30)
    assert outbox.send_due(now=NOW + timedelta(seconds=29)) == 0
    assert outbox.send_due(now=NOW + timedelta(seconds=30)) == 0
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == NOW + timedelta(seconds=30 + 120)
    outbox.send_due(now=NOW + timedelta(seconds=150))

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 3, 502)
    assert delivery.next_attempt_at is None
    assert len(receiver.raw) == 3


def test_a_retry_that_succeeds_is_the_same_delivery(receiver):
    receiver.statuses = [503]
    WebhookTarget.objects.create(name="ops", url=receiver.url)
    [delivery] = outbox.queue(_message(), now=NOW)
    outbox.send_due(now=NOW)

    assert outbox.send_due(now=NOW + timedelta(seconds=30)) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, "")
    assert Delivery.objects.count() == 1


def test_a_refused_connection_is_recorded_not_raised(settings):
    settings.MONOENV_WEBHOOK_TIMEOUT_SECONDS = 1
    # Nothing listens on port 9 here.
    WebhookTarget.objects.create(name="gone", url="http://127.0.0.1:9/hook")
    [delivery] = outbox.queue(_message(), now=NOW)

    assert outbox.send_due(now=NOW) == 0

    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_error and delivery.response_status is None


def test_a_delivery_another_worker_claimed_is_not_sent_twice(receiver):
    WebhookTarget.objects.create(name="ops", url=receiver.url)
    [delivery] = outbox.queue(_message(), now=NOW)
    # Another worker claimed it a moment ago: its claim moved next_attempt_at on.
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=NOW + timedelta(seconds=outbox.CLAIM_SECONDS)
    )

    assert outbox.send_due(now=NOW) == 0
    assert receiver.raw == []


def test_beat_sends_due_deliveries_every_minute():
    from monoenv_site.celery import app as celery_app

    celery_app.loader.import_default_modules()
    [entry] = [
        entry for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "notifications.tasks.send_due"
    ]  # fmt: skip
    assert entry["schedule"] == timedelta(minutes=1)
    assert "notifications.tasks.send_due" in celery_app.tasks


def test_the_task_sends_what_is_due(receiver):
    from notifications import tasks

    WebhookTarget.objects.create(name="ops", url=receiver.url)
    outbox.queue(_message(), now=NOW)

    assert tasks.send_due() == 1


def test_manage_py_evaluate_runs_every_job_in_data_flow_order_and_sends_last(receiver):
    from io import StringIO

    from django.core.management import call_command

    from monoenv_site.management.commands.evaluate import PERIODIC_JOBS

    WebhookTarget.objects.create(name="ops", url=receiver.url)
    outbox.queue(_message(), now=NOW)
    out = StringIO()

    call_command("evaluate", stdout=out)

    assert [name for name, _ in PERIODIC_JOBS] == [
        "retention", "rollups", "slo evaluation", "deploy analysis", "flags", "incidents",
        "notifications",
    ]  # fmt: skip
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [name for name, _ in PERIODIC_JOBS]
    # Sent once: by the evaluator's pass or by the last job, never by both.
    assert "1 notification(s) sent" in lines[2] + lines[-1]
    assert len(receiver.raw) == 1
    assert Delivery.objects.get().status == "sent"
