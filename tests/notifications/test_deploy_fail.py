"""A deploy fail goes through the outbox, hostile names and all, to a real HTTP server.

The service name, version and verdict reason come from ingested spans, so a
service named `<!channel>` or an exception type full of `<`, `&`, `>` must
reach Slack as text: no mention, no link, no markup but Monoenv's own link.
"""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import verdicts
from deployments.models import Deployment, Verdict
from notifications import outbox
from notifications.models import Delivery, WebhookTarget
from tests.deployments.conftest import store, traffic

pytestmark = pytest.mark.django_db

HOSTILE_EXCEPTION = "Boom<&>Error<!here>"
# What Slack gives meaning to: <...> (mentions, links) and & (entities).
SLACK_ENTITY = re.compile(r"&(amp|lt|gt);")


@pytest.fixture
def t0():
    return (timezone.now() - timedelta(hours=3)).replace(second=0, microsecond=0)


def _failing_deploy(t0, service: str) -> Deployment:
    store(
        traffic(service=service, version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=1),
        traffic(service=service, version="v2<b>&", start=t0, minutes=5, per_minute=120, seed=2,
                error_rate=0.1, exception_type=HOSTILE_EXCEPTION),
    )  # fmt: skip
    return Deployment.objects.create(service=service, version="v2<b>&", started_at=t0)


def _shown_texts(payload: dict) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [element["text"] for element in block.get("elements", [])]
    return texts


@pytest.mark.parametrize("service", ["<!channel>", "<https://evil.example|click>"])
def test_slack_gets_hostile_names_escaped_in_a_deploy_fail(receiver, t0, service):
    WebhookTarget.objects.create(name="slack", url=receiver.url, kind="slack")
    deploy = _failing_deploy(t0, service)

    verdicts.run_checkpoint(deploy.pk, 5)
    sent = outbox.send_due()

    deploy.refresh_from_db()
    assert deploy.verdict == Verdict.FAIL and HOSTILE_EXCEPTION in deploy.verdict_reason
    assert sent == 1
    [raw] = receiver.raw
    payload = json.loads(raw)
    *texts, link = _shown_texts(payload)
    for text in texts:
        assert "<" not in text and ">" not in text
        assert not SLACK_ENTITY.sub("", text).count("&")
    assert "&lt;b&gt;&amp;" in texts[0]  # the version, escaped
    assert "Boom&lt;&amp;&gt;Error&lt;!here&gt;" in texts[0]  # the exception type
    # Monoenv's own link is the one link; its text is the escaped service and version.
    assert link.startswith(f"<{deploy.link()}|") and link.count("<") == 1
    assert "<" not in link[1:-1] and ">" not in link[1:-1]
    assert link[1:-1].split("|", 1)[1] == (
        service.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        + " v2&lt;b&gt;&amp;"
    )


def test_a_deploy_fail_is_one_recorded_delivery_with_the_generic_shape(receiver, t0):
    WebhookTarget.objects.create(name="ops", url=receiver.url)
    deploy = _failing_deploy(t0, "<!channel>")

    verdicts.run_checkpoint(deploy.pk, 5)
    verdicts.run_checkpoint(deploy.pk, 5)  # still failing: nothing new to say
    outbox.send_due()

    [delivery] = Delivery.objects.all()
    assert delivery.subject == f"deployments.deployment:{deploy.pk}"
    assert (delivery.event, delivery.status, delivery.attempts) == ("deploy_verdict", "sent", 1)
    [payload] = receiver.received
    assert payload["event"] == "deploy_verdict" and payload["verdict"] == "fail"
    assert payload["severity"] == "page"
    assert payload["deployment"]["service"] == "<!channel>"  # JSON carries names exactly
    assert payload["summary"].startswith("[DEPLOY FAIL] <!channel> v2<b>& (production): ")
    assert HOSTILE_EXCEPTION in payload["reason"]
    assert payload["url"] == deploy.link()


def test_a_deploy_fail_goes_only_to_targets_that_take_pages(receiver, t0):
    WebhookTarget.objects.create(name="tickets", url=receiver.url, severities=["ticket"])
    deploy = _failing_deploy(t0, "shop")

    verdicts.run_checkpoint(deploy.pk, 5)

    assert not Delivery.objects.exists()
