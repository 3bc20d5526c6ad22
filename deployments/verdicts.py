"""Checkpoints: run the analysis, keep the verdict's history, notify a fail."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments import analysis, suspects
from deployments.models import Deployment, Finding, Verdict, VerdictRecord
from notifications import outbox
from notifications.message import Message

logger = logging.getLogger(__name__)


def run_checkpoint(
    deployment_id: int, checkpoint: int, *, now: datetime | None = None, synchronous=False
):
    """Evaluate one checkpoint of one deploy. Running it twice changes nothing.

    A new fail is queued in the outbox in the checkpoint's transaction, so it
    is notified once, with the verdict it announces (notifications/outbox.py
    sends it).
    """
    now = now or timezone.now()
    deploy = Deployment.objects.get(pk=deployment_id)
    evaluation = analysis.evaluate(deploy, checkpoint)
    if evaluation.verdict == Verdict.FAIL:
        # Before taking the row lock: suspects point at other deploys, whose rows
        # other checkpoints may hold locked, and two such workers would deadlock.
        suspects.record_for_deploy(deploy, _regression_of(deploy, evaluation))
    with transaction.atomic():
        deploy = Deployment.objects.select_for_update().get(pk=deployment_id)
        was_failing = deploy.verdict == Verdict.FAIL
        record = _save(deploy, evaluation, now=now)
        if record.checkpoint == _latest_checkpoint(deploy):
            deploy.verdict = evaluation.verdict
            deploy.verdict_reason = evaluation.reason
            deploy.evaluated_at = now
            deploy.save(update_fields=["verdict", "verdict_reason", "evaluated_at"])
        if evaluation.verdict == Verdict.FAIL and not was_failing:
            outbox.queue(fail_message(deploy), now=now)
    return record


def _save(deploy: Deployment, evaluation: analysis.Evaluation, *, now) -> VerdictRecord:
    record, _ = VerdictRecord.objects.update_or_create(
        deployment=deploy,
        checkpoint=evaluation.checkpoint,
        defaults={
            "verdict": evaluation.verdict,
            "reason": evaluation.reason,
            "baseline_kind": evaluation.baseline_kind,
            "window_start": evaluation.window_start,
            "window_end": evaluation.window_end,
            "baseline_requests": evaluation.baseline_requests,
            "candidate_requests": evaluation.candidate_requests,
            "more_requests_needed": evaluation.more_requests_needed,
            "created_at": now,
        },
    )
    record.findings.all().delete()
    Finding.objects.bulk_create(
        Finding(deployment=deploy, evaluation=record, **vars(finding))
        for finding in evaluation.findings
    )
    return record


def _latest_checkpoint(deploy: Deployment) -> int:
    return deploy.verdict_records.order_by("-checkpoint").values_list("checkpoint", flat=True)[0]


def _regression_of(deploy: Deployment, evaluation: analysis.Evaluation) -> suspects.Regression:
    worst = [f for f in evaluation.findings if f.significant]
    route = next((f.route for f in worst if f.route), "")
    baseline = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    return suspects.Regression(
        service=deploy.service,
        route=route,
        start=evaluation.window_start,
        end=evaluation.window_end,
        baseline_start=evaluation.window_start - baseline,
        began=evaluation.window_start,
    )


def fail_message(deploy: Deployment) -> Message:
    """The deploy-fail notification: the verdict, its findings and the top suspect."""
    latest = deploy.findings.filter(significant=True, evaluation_id=_latest_record_id(deploy))
    summary = (
        f"[DEPLOY FAIL] {deploy.service} {deploy.version} ({deploy.environment}): "
        f"{deploy.verdict_reason}"
    )
    top = deploy.suspects.select_related("suspect").first()
    if top is not None and top.suspect_id != deploy.pk:
        summary += f" Top suspect: {top.suspect.service} {top.suspect.version}. {top.evidence}"
    return Message(
        event="deploy_verdict",
        # Deploy fails go to the targets that take pages.
        severity="page",
        summary=summary,
        link=deploy.link(),
        link_text=f"{deploy.service} {deploy.version}",
        subject=f"deployments.deployment:{deploy.pk}",
        details={
            "verdict": deploy.verdict,
            "deployment": {
                "id": deploy.pk,
                "service": deploy.service,
                "version": deploy.version,
                "environment": deploy.environment,
                "started_at": deploy.started_at.isoformat(),
                "deployer": deploy.deployer,
                "commit_sha": deploy.commit_sha,
                "url": deploy.url,
            },
            "reason": deploy.verdict_reason,
            "findings": [
                {
                    "metric": f.metric,
                    "route": f.route,
                    "baseline": f.baseline_value,
                    "candidate": f.candidate_value,
                    "p_value": f.adjusted_p_value,
                    "threshold": f.threshold,
                    "detail": f.detail,
                }
                for f in latest
            ],
        },
    )


def _latest_record_id(deploy: Deployment) -> int | None:
    record = deploy.verdict_records.order_by("-checkpoint").first()
    return record.pk if record else None
