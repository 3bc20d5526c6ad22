import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slo import evaluation, webhooks
from slo.models import Delivery, WebhookTarget
from tests.slo.factories import add_minutes, make_slo

pytestmark = pytest.mark.django_db


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        server.received.append(json.loads(body))
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    """A real HTTP server on a free port; set .statuses to answer with those first."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.statuses = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield server
    server.shutdown()
    server.server_close()


def _fast_burn(now):
    slo = make_slo(window="30d")
    last = now.replace(second=0, microsecond=0)
    add_minutes(slo, last - timedelta(minutes=59), 60, good=90, total=100)
    return slo


def test_it_delivers_an_alert_that_explains_itself(receiver, now):
    WebhookTarget.objects.create(name="ops", url=receiver.url, severities=["page"])
    _fast_burn(now)

    report = evaluation.evaluate_all(now=now)

    assert report.sent == 2  # the two page tiers; tickets are not wanted here
    payload = next(p for p in receiver.received if p["alert"]["long_window"] == "1h")
    assert payload["event"] == "firing"
    assert payload["slo"]["name"] == "checkout-availability"
    assert payload["alert"]["short_window"] == "5m"
    assert payload["alert"]["long_burn_rate"] == pytest.approx(100)
    # 600 bad events where 0.1% of 6,000 allows 6: the budget is spent 100 times over.
    assert payload["budget_consumed_pct"] == pytest.approx(10_000)
    assert payload["time_to_exhaustion_seconds"] == 0
    assert payload["url"].endswith(f"/api/v1/slos/{payload['slo']['id']}")
    assert "100.0× over 1h" in payload["summary"] and "threshold 14.40×" in payload["summary"]


def test_it_retries_a_failed_delivery_with_backoff(receiver, now):
    receiver.statuses = [503]
    WebhookTarget.objects.create(name="ops", url=receiver.url, severities=["page"])
    _fast_burn(now)
    evaluation.evaluate_all(now=now)
    delivery_ids = set(Delivery.objects.values_list("pk", flat=True))

    failed_once = [d for d in Delivery.objects.all() if d.attempts == 1 and d.status == "pending"]
    assert len(failed_once) == 1
    retry = failed_once[0]
    assert retry.response_status == 503 and "503" in retry.last_error
    assert retry.next_attempt_at == now + timedelta(seconds=30)

    assert webhooks.send_due(now=now + timedelta(seconds=29)) == 0
    assert webhooks.send_due(now=now + timedelta(seconds=30)) == 1

    retry.refresh_from_db()
    assert (retry.status, retry.attempts, retry.sent_at) == ("sent", 2, now + timedelta(seconds=30))
    assert len(receiver.received) == 3
    assert set(Delivery.objects.values_list("pk", flat=True)) == delivery_ids


def test_a_delivery_that_finally_fails_is_recorded_and_the_evaluator_goes_on(now, settings):
    settings.MONOENV_WEBHOOK_MAX_ATTEMPTS = 2
    settings.MONOENV_WEBHOOK_TIMEOUT_SECONDS = 1
    # Nothing listens on port 9 here: every attempt fails to connect.
    WebhookTarget.objects.create(name="gone", url="http://127.0.0.1:9/hook")
    _fast_burn(now)

    report = evaluation.evaluate_all(now=now)
    webhooks.send_due(now=now + timedelta(minutes=1))

    assert report.evaluated == 1 and report.fired
    assert set(Delivery.objects.values_list("status", "attempts")) == {("failed", 2)}
    assert all(d.last_error for d in Delivery.objects.all())


def test_it_shapes_slack_payloads(receiver, now):
    WebhookTarget.objects.create(name="slack", url=receiver.url, kind="slack", severities=["page"])
    _fast_burn(now)

    evaluation.evaluate_all(now=now)

    message = receiver.received[0]
    assert message["text"].startswith("[PAGE] checkout-availability")
    assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "/api/v1/slos/" in message["blocks"][1]["elements"][0]["text"]
