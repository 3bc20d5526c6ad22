"""A failing rollout's message goes through the outbox, escaped for each target kind."""

import pytest
from django.utils import timezone

from flags.models import FlagChange
from flags.notify import FailingCohort, fail_message
from notifications import outbox
from notifications.models import Delivery, WebhookTarget

pytestmark = pytest.mark.django_db


def test_a_failing_rollout_names_flag_variant_findings_and_link():
    change = FlagChange.objects.create(flag="new-checkout", control="off", verdict="fail",
                                       services=["shop"], at=timezone.now())  # fmt: skip
    failing = [FailingCohort("shop", "on", "error rate on POST /checkout 1.0% → 3.1%")]
    message = fail_message(change, failing)
    assert message.summary == (
        "[ROLLOUT FAIL] new-checkout: shop, new-checkout=on against off: error rate on "
        "POST /checkout 1.0% → 3.1% The rollout must not widen."
    )
    assert message.link.endswith(f"/api/v1/flags/changes/{change.pk}")
    assert message.details["failing"] == [
        {"service": "shop", "variant": "on", "findings": failing[0].findings}
    ]


def test_it_is_queued_for_targets_that_take_pages():
    WebhookTarget.objects.create(name="ops", url="http://127.0.0.1:9/hook", kind="slack")
    change = FlagChange.objects.create(flag="<b>x</b>", control="off", verdict="fail",
                                       at=timezone.now())  # fmt: skip
    [delivery] = outbox.queue(fail_message(change, [FailingCohort("s", "*on*", "boom")]),
                              now=timezone.now())  # fmt: skip
    assert Delivery.objects.get().subject == f"flags.flagchange:{change.pk}"
    assert "<b>" not in str(delivery.payload)
