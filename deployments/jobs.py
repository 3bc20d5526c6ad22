"""The periodic work of deploy analysis: jobs return the work, tasks enqueue it.

`run_periodic()` detects deploys from telemetry, claims every look that came
due, lists suspects for page alerts that fired, and every few minutes runs the
route watch (deployments/route_watch.py). It returns the claimed looks;
deployments/tasks.py fans them out to workers, `run_once()` takes them here.

A claim is a lease: the conditional UPDATE moves the look's due time
MONOENV_DEPLOY_CLAIM_SECONDS on, so exactly one worker gets it, and if that
worker fails the look comes due again. Only a look that was saved moves the
deploy to its next look (deployments/verdicts.py), so no look is lost.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from deployments import events, route_watch, slo_link, suspects, verdicts
from deployments.models import Deployment, Suspect

logger = logging.getLogger(__name__)

BATCH_SIZE = 200


@dataclass
class PeriodicWork:
    detected: int = 0
    looks: list[tuple[int, int]] = field(default_factory=list)  # (deployment id, minutes)
    alerts_explained: int = 0
    route_shifts: int = 0


def run_periodic(*, now: datetime | None = None) -> PeriodicWork:
    now = now or timezone.now()
    work = PeriodicWork(detected=len(events.detect_deploys(now=now)))
    work.looks = claim_due_looks(now=now)
    work.alerts_explained = explain_alerts(now=now)
    work.route_shifts = route_watch.watch_if_due(now=now)
    return work


def claim_due_looks(*, now: datetime) -> list[tuple[int, int]]:
    """Claim every look that came due; each is claimed by one caller only."""
    lease = timedelta(seconds=settings.MONOENV_DEPLOY_CLAIM_SECONDS)
    claimed = []
    for deploy in Deployment.objects.due(now)[:BATCH_SIZE]:
        look = deploy.due_checkpoint(now)
        if look is None:
            continue
        # Another worker that got there first has moved the due time on.
        won = Deployment.objects.filter(
            pk=deploy.pk, next_evaluation_at=deploy.next_evaluation_at
        ).update(next_evaluation_at=now + lease)
        if won:
            claimed.append((deploy.pk, look))
    return claimed


def take_look(deployment_id: int, minutes: int, *, now: datetime | None = None) -> bool:
    """Take one claimed look here and now; True if the deploy newly failed."""
    return verdicts.run_look(deployment_id, minutes, now=now).newly_failed


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


def run_once(*, now: datetime | None = None) -> str:
    """For manage.py evaluate: one pass with every look taken here, as a line of text.

    A look that raises is logged and left claimed: it comes due again when its
    lease runs out.
    """
    work = run_periodic(now=now)
    taken = 0
    for deployment_id, minutes in work.looks:
        try:
            take_look(deployment_id, minutes, now=now)
        except Exception:
            logger.exception("look at %s min of deploy %s failed", minutes, deployment_id)
            continue
        taken += 1
    return (
        f"{work.detected} deploy(s) detected, {taken} checkpoint(s) evaluated, "
        f"{work.alerts_explained} alert(s) given suspects, "
        f"{work.route_shifts} route shift(s) found"
    )
