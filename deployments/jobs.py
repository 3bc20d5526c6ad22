"""The periodic work of deploy analysis, run each minute by beat or once by hand.

`run_periodic()` detects deploys from telemetry, evaluates every checkpoint
that came due, lists suspects for page alerts that fired, and every few
minutes runs the route watch (deployments/route_watch.py).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from deployments import events, route_watch, slo_link, suspects, verdicts
from deployments.models import Deployment, Suspect

logger = logging.getLogger(__name__)

BATCH_SIZE = 200


def run_periodic(*, now: datetime | None = None, synchronous: bool = True) -> dict:
    now = now or timezone.now()
    detected = events.detect_deploys(now=now)
    evaluated = evaluate_due(now=now, synchronous=synchronous)
    explained = explain_alerts(now=now)
    shifts = route_watch.watch_if_due(now=now)
    return {
        "detected": len(detected),
        "evaluated": evaluated,
        "alerts_explained": explained,
        "route_shifts": shifts,
    }


def evaluate_due(*, now: datetime, synchronous: bool) -> int:
    from deployments import tasks

    count = 0
    for deploy in Deployment.objects.due(now)[:BATCH_SIZE]:
        checkpoint = deploy.due_checkpoint(now)
        if checkpoint is None:
            continue
        following = Deployment.checkpoint_after(checkpoint)
        deploy.schedule_checkpoint(following)
        # Claim the checkpoint; another worker that got there first moved it on.
        claimed = Deployment.objects.filter(
            pk=deploy.pk, next_evaluation_at__lte=now, next_checkpoint__lte=checkpoint
        ).update(next_checkpoint=following, next_evaluation_at=deploy.next_evaluation_at)
        if not claimed:
            continue
        count += 1
        if synchronous:
            verdicts.run_checkpoint(deploy.pk, checkpoint, now=now, synchronous=True)
        else:
            tasks.evaluate_checkpoint.apply_async(args=[deploy.pk, checkpoint], expires=3600)
    return count


def explain_alerts(*, now: datetime) -> int:
    """List suspects once for each page alert that fired in the lookback."""
    lookback = timedelta(minutes=settings.MONOENV_DEPLOY_SUSPECT_LOOKBACK_MINUTES)
    explained = set(
        Suspect.objects.filter(alert_id__isnull=False).values_list("alert_id", flat=True)
    )
    count = 0
    for alert in slo_link.open_page_alerts(since=now - lookback):
        if alert.pk in explained:
            continue
        service, route = slo_link.alert_scope(alert)
        start = alert.fired_at - alert.long_window
        regression = suspects.Regression(
            service=service,
            route=route,
            start=start,
            end=alert.fired_at,
            baseline_start=start - timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES),
        )
        suspects.record_for_alert(alert.pk, regression)
        count += 1
    return count


def run_once() -> str:
    """For manage.py evaluate: one synchronous pass, as a line of text."""
    done = run_periodic(synchronous=True)
    return (
        f"{done['detected']} deploy(s) detected, {done['evaluated']} checkpoint(s) evaluated, "
        f"{done['alerts_explained']} alert(s) given suspects, "
        f"{done['route_shifts']} route shift(s) found"
    )
