import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO

import pytest
from django.core.management import call_command

from deployments import analysis, jobs, tasks
from deployments.models import Deployment, Verdict
from notifications import outbox
from notifications.models import WebhookTarget
from tests.deployments.conftest import store, traffic

pytestmark = pytest.mark.django_db


def take_all(work: jobs.PeriodicWork, *, now) -> int:
    for deployment_id, minutes in work.looks:
        jobs.take_look(deployment_id, minutes, now=now)
    return len(work.looks)


def test_the_periodic_job_claims_due_looks_once_and_takes_them(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=1),
        traffic(service="shop", version="v2", start=t0, minutes=60, per_minute=120, seed=2,
                error_rate=0.05),
    )  # fmt: skip
    first = jobs.run_periodic(now=t0 + timedelta(seconds=50))
    assert (first.detected, first.looks) == (1, [])
    deploy = Deployment.objects.get()
    assert deploy.verdict == Verdict.PENDING and deploy.next_checkpoint == 1
    # Late: the latest due look is claimed, the earlier ones skipped; a second
    # pass finds it claimed.
    now = t0 + timedelta(minutes=16)
    work = jobs.run_periodic(now=now)
    assert work.looks == [(deploy.pk, 15)]
    assert jobs.run_periodic(now=now).looks == []
    take_all(work, now=now)
    deploy.refresh_from_db()
    assert deploy.verdict == Verdict.FAIL and deploy.next_checkpoint == 16
    now = t0 + timedelta(minutes=61)
    take_all(jobs.run_periodic(now=now), now=now)
    deploy.refresh_from_db()
    assert list(deploy.verdict_records.values_list("checkpoint", flat=True)) == [15, 60]
    assert deploy.next_checkpoint is None and deploy.next_evaluation_at is None


def test_a_look_that_raises_is_claimed_again_when_its_lease_runs_out(t0, monkeypatch, settings):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=1),
        traffic(service="shop", version="v2", start=t0, minutes=10, per_minute=120, seed=2),
    )  # fmt: skip
    settings.MONOENV_DEPLOY_CLAIM_SECONDS = 20
    jobs.run_periodic(now=t0 + timedelta(seconds=50))
    deploy = Deployment.objects.get()
    real_evaluate = analysis.evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    now = t0 + timedelta(minutes=5, seconds=40)
    monkeypatch.setattr(analysis, "evaluate", broken)
    assert "0 checkpoint(s) evaluated" in jobs.run_once(now=now)
    deploy.refresh_from_db()
    assert deploy.next_checkpoint == 1 and not deploy.verdict_records.exists()
    # Within the lease nobody else takes it; after it, the next pass does.
    monkeypatch.setattr(analysis, "evaluate", real_evaluate)
    assert jobs.run_periodic(now=now + timedelta(seconds=10)).looks == []
    later = now + timedelta(seconds=settings.MONOENV_DEPLOY_CLAIM_SECONDS + 1)
    assert "1 checkpoint(s) evaluated" in jobs.run_once(now=later)
    deploy.refresh_from_db()
    assert list(deploy.verdict_records.values_list("checkpoint", flat=True)) == [5]
    assert deploy.next_checkpoint == 6


def test_a_look_run_twice_writes_one_history(t0):
    store(
        traffic(service="shop", version="v1", start=t0 - timedelta(minutes=60), minutes=60,
                per_minute=120, seed=1),
        traffic(service="shop", version="v2", start=t0, minutes=15, per_minute=120, seed=2),
    )  # fmt: skip
    jobs.run_periodic(now=t0 + timedelta(seconds=50))
    deploy = Deployment.objects.get()
    now = t0 + timedelta(minutes=5, seconds=40)
    [(deployment_id, minutes)] = jobs.run_periodic(now=now).looks
    jobs.take_look(deployment_id, minutes, now=now)
    # A redelivered task, after the deploy moved on.
    jobs.take_look(deployment_id, minutes, now=now + timedelta(seconds=5))
    deploy.refresh_from_db()
    assert deploy.verdict_records.count() == 1
    assert deploy.next_checkpoint == 6


def test_the_look_task_retries_on_any_error():
    task = tasks.evaluate_checkpoint
    assert task.acks_late and Exception in task.autoretry_for and task.max_retries >= 3


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
        deploy.schedule_checkpoint(5)
        deploy.save()
        now = t0 + timedelta(minutes=6)
        with django_capture_on_commit_callbacks(execute=True):
            jobs.run_once(now=now)
        with django_capture_on_commit_callbacks(execute=True):
            jobs.run_once(now=now + timedelta(minutes=1))
        outbox.send_due()
    finally:
        server.shutdown()
    [payload] = _Receiver.received
    assert payload["event"] == "deploy_verdict" and payload["verdict"] == "fail"
    assert payload["deployment"]["id"] == deploy.pk
    assert payload["url"].endswith(f"/api/v1/deployments/{deploy.pk}")
    assert payload["summary"].startswith("[DEPLOY FAIL] shop v2 (production): error rate")
    assert {"metric": "error_rate", "route": ""}.items() <= payload["findings"][0].items()
