import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO

import pytest
from django.core.management import call_command

from deployments import jobs, verdicts
from deployments.models import Deployment, Verdict
from notifications import outbox
from notifications.models import WebhookTarget
from tests.deployments.conftest import store, traffic

pytestmark = pytest.mark.django_db


def test_the_periodic_job_detects_and_evaluates_due_checkpoints(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=1),
        traffic(service="shop", version="v2", start=t0, minutes=60, per_minute=120, seed=2,
                error_rate=0.05),
    )  # fmt: skip
    first = jobs.run_periodic(now=t0 + timedelta(minutes=2))
    assert first == {"detected": 1, "evaluated": 0, "alerts_explained": 0, "route_shifts": 0}
    deploy = Deployment.objects.get()
    assert deploy.verdict == Verdict.PENDING
    # Late: the latest due checkpoint is evaluated, the earlier ones skipped.
    assert jobs.run_periodic(now=t0 + timedelta(minutes=16))["evaluated"] == 1
    assert jobs.run_periodic(now=t0 + timedelta(minutes=17))["evaluated"] == 0
    deploy.refresh_from_db()
    assert deploy.verdict == Verdict.FAIL and deploy.next_checkpoint == 30
    jobs.run_periodic(now=t0 + timedelta(minutes=61))
    deploy.refresh_from_db()
    assert list(deploy.verdict_records.values_list("checkpoint", flat=True)) == [15, 60]
    assert deploy.next_checkpoint is None and deploy.next_evaluation_at is None


def test_manage_py_evaluate_runs_the_deploy_analysis():
    out = StringIO()
    call_command("evaluate", stdout=out)
    assert "deploy analysis: 0 deploy(s) detected, 0 checkpoint(s) evaluated" in out.getvalue()


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_fail_verdict_notifies_the_webhook_targets(t0, django_capture_on_commit_callbacks):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received = []
    try:
        WebhookTarget.objects.create(name="ops", url=f"http://127.0.0.1:{server.server_port}/")
        store(
            traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                    per_minute=120, seed=1),
            traffic(service="shop", version="v2", start=t0, minutes=5, per_minute=120, seed=2,
                    error_rate=0.1),
        )  # fmt: skip
        deploy = Deployment.objects.create(service="shop", version="v2", started_at=t0)
        with django_capture_on_commit_callbacks(execute=True):
            verdicts.run_checkpoint(deploy.pk, 5, synchronous=True)
        with django_capture_on_commit_callbacks(execute=True):
            verdicts.run_checkpoint(deploy.pk, 5, synchronous=True)
        outbox.send_due()
    finally:
        server.shutdown()
    [payload] = _Receiver.received
    assert payload["event"] == "deploy_verdict" and payload["verdict"] == "fail"
    assert payload["deployment"]["id"] == deploy.pk
    assert payload["url"].endswith(f"/api/v1/deployments/{deploy.pk}")
    assert payload["summary"].startswith("[DEPLOY FAIL] shop v2 (production): error rate")
    assert {"metric": "error_rate", "route": ""}.items() <= payload["findings"][0].items()
