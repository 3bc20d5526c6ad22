"""Moving the webhook tables from slo to notifications keeps every row."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# Unapplying slo 0002 unapplies notifications 0001, which depends on it.
BEFORE = [("slo", "0001_slos_alerts_webhooks")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_targets_and_deliveries_move_with_their_rows():
    old = _migrate(BEFORE)
    now = timezone.now()
    slo = old.get_model("slo", "SLO").objects.create(name="checkout", service="checkout",
                                                     objective=99)  # fmt: skip
    alert = old.get_model("slo", "Alert").objects.create(
        slo=slo, severity="page", long_window=timedelta(hours=1), short_window=timedelta(minutes=5),
        threshold=14.4, long_burn_rate=20, short_burn_rate=20, budget_consumed_pct=3,
        fired_at=now, last_evaluated_at=now,
    )  # fmt: skip
    target = old.get_model("slo", "WebhookTarget").objects.create(
        name="ops", url="https://hooks.example.com/x", kind="slack", severities=["page"]
    )
    old.get_model("slo", "Delivery").objects.create(
        alert=alert, target=target, event="firing", payload={"text": "hi"}, status="sent",
        attempts=2, response_status=200, last_error="",
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    new = _migrate(executor.loader.graph.leaf_nodes())

    [moved_target] = new.get_model("notifications", "WebhookTarget").objects.all()
    assert (moved_target.pk, moved_target.name, moved_target.kind) == (target.pk, "ops", "slack")
    assert moved_target.severities == ["page"]
    [delivery] = new.get_model("notifications", "Delivery").objects.all()
    assert delivery.subject == f"slo.alert:{alert.pk}"
    assert delivery.target_id == target.pk
    assert (delivery.event, delivery.status, delivery.attempts) == ("firing", "sent", 2)
    assert delivery.payload == {"text": "hi"}
    # The alert may go now: nothing in the database points at it any more.
    new.get_model("slo", "Alert").objects.filter(pk=alert.pk).delete()
    assert new.get_model("notifications", "Delivery").objects.count() == 1
