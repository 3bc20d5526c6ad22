"""Looks at a deploy: run the analysis, keep the verdict's history, notify a fail.

A look is evaluated once: the job claims it with a lease (deployments/jobs.py),
and the look's record and the move to the next look are saved in one
transaction, so a look whose worker failed is claimed again when its lease
runs out, and a look run twice (a redelivered task) writes one history.

A fail at any look holds, whatever later looks say, because each look's
alpha was spent knowing that: only a recovery lifts it. A recovery is a
failing deploy whose recent window (at least MONOENV_DEPLOY_RECOVERY_MINUTES,
analysis.recovery) would pass on its own, with an alpha of its own: the
verdict becomes `recovered` ("transient regression, recovered", which the
gate allows), and later looks judge from the window's start on.

A new fail is queued in the outbox in the look's transaction, so it is
notified once, with the verdict it announces (notifications/outbox.py sends it).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments import analysis, suspects
from deployments.models import Deployment, Finding, Verdict, VerdictRecord
from notifications import outbox
from notifications.message import Message

logger = logging.getLogger(__name__)


@dataclass
class LookDone:
    """What a look changed: its record (None if it changed nothing), and a new fail."""

    record: VerdictRecord | None
    newly_failed: bool = False

    @property
    def verdict(self) -> str | None:
        return self.record.verdict if self.record else None


def run_checkpoint(deployment_id: int, checkpoint: int, *, now: datetime | None = None):
    """Take the look at `checkpoint` minutes of one deploy. Running it twice changes nothing.

    Returns the look's VerdictRecord (or None when the look changed nothing).
    """
    return run_look(deployment_id, checkpoint, now=now).record


def run_look(deployment_id: int, checkpoint: int, *, now: datetime | None = None) -> LookDone:
    now = now or timezone.now()
    deploy = Deployment.objects.get(pk=deployment_id)
    result = analysis.evaluate(deploy, checkpoint)
    if result.verdict == Verdict.FAIL or deploy.verdict == Verdict.FAIL:
        result = analysis.recovery(deploy, checkpoint) or result
    if result.verdict == Verdict.FAIL and (deploy.verdict != Verdict.FAIL or result.summary):
        # Before taking the row lock: suspects point at other deploys, whose rows
        # other looks may hold locked, and two such workers would deadlock.
        suspects.record_for_deploy(deploy, _regression_of(deploy, result))
        # A regression another change explains, or that lives in one flag's cohort:
        # the reason names it.
        result.reason = " ".join(filter(None, [result.reason, suspects.named_cause(deploy)]))
    with transaction.atomic():
        deploy = Deployment.objects.select_for_update().get(pk=deployment_id)
        if _already_taken(deploy, checkpoint):
            return LookDone(deploy.verdict_records.filter(checkpoint=checkpoint).first())
        was_failing = deploy.verdict == Verdict.FAIL
        record = _save(deploy, result, now=now)
        _move_on(deploy, checkpoint, result, now=now)
        newly_failed = deploy.verdict == Verdict.FAIL and not was_failing
        if newly_failed:
            outbox.queue(fail_message(deploy), now=now)
    return LookDone(record, newly_failed=newly_failed)


def _already_taken(deploy: Deployment, checkpoint: int) -> bool:
    """Whether this look, or a later one, has been taken already."""
    if deploy.next_checkpoint is not None:
        return checkpoint < deploy.next_checkpoint
    return deploy.verdict_records.filter(checkpoint__gte=checkpoint).exists()


def _move_on(deploy: Deployment, checkpoint: int, result: analysis.LookResult, *, now) -> None:
    """The deploy's verdict after this look, and its next look."""
    held = deploy.verdict in (Verdict.FAIL, Verdict.RECOVERED)
    if result.verdict in (Verdict.FAIL, Verdict.RECOVERED) or result.summary and not held:
        deploy.verdict = result.verdict
        deploy.verdict_reason = result.reason
    if result.verdict == Verdict.RECOVERED:
        deploy.recovered_from = result.window_start
    deploy.evaluated_at = now
    deploy.schedule_checkpoint(Deployment.checkpoint_after(checkpoint))
    deploy.save(
        update_fields=[
            "verdict", "verdict_reason", "recovered_from", "evaluated_at", "next_checkpoint",
            "next_evaluation_at",
        ]
    )  # fmt: skip


def _save(deploy: Deployment, result: analysis.LookResult, *, now) -> VerdictRecord | None:
    """Keep the look's record if it is a checkpoint, or a new fail or recovery between them.

    Between checkpoints a look has no pass alpha, so its other verdicts are no news.
    """
    if not result.summary:
        last = deploy.verdict_records.filter(checkpoint__lt=result.checkpoint).last()
        news = result.verdict in (Verdict.FAIL, Verdict.RECOVERED)
        if not news or (last is not None and last.verdict == result.verdict):
            return None
    record, _ = VerdictRecord.objects.update_or_create(
        deployment=deploy,
        checkpoint=result.checkpoint,
        defaults={
            "verdict": result.verdict,
            "reason": result.reason,
            "baseline_kind": result.baseline_kind,
            "window_start": result.window_start,
            "window_end": result.window_end,
            "baseline_requests": result.judgement.baseline_requests,
            "candidate_requests": result.judgement.candidate_requests,
            "more_requests_needed": result.judgement.more_requests_needed,
            "created_at": now,
        },
    )
    record.findings.all().delete()
    Finding.objects.bulk_create(
        Finding(deployment=deploy, verdict_record=record, **vars(finding))
        for finding in result.findings
    )
    return record


def _regression_of(deploy: Deployment, result: analysis.LookResult) -> suspects.Regression:
    worst = [f for f in result.findings if f.significant]
    route = next((f.route for f in worst if f.route), "")
    baseline = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    return suspects.Regression(
        service=deploy.service,
        route=route,
        start=result.window_start,
        end=result.window_end,
        baseline_start=result.window_start - baseline,
        began=result.window_start,
    )


def fail_message(deploy: Deployment) -> Message:
    """The deploy-fail notification: the verdict, its findings and the top suspect."""
    latest = deploy.latest_findings(significant_only=True)
    summary = (
        f"[DEPLOY FAIL] {deploy.service} {deploy.version} ({deploy.environment}): "
        f"{deploy.verdict_reason}"
    )
    top = deploy.suspects.select_related("suspect").first()
    if top is not None and top.suspect_id != deploy.pk:
        summary += f" Top suspect: {top.label()}. {top.evidence}"
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
