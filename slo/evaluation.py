"""One evaluation pass: burn rates against each SLO's alert tiers.

An alert fires when both windows of a tier burn faster than its threshold,
and each window holds at least MONOENV_SLO_MIN_EVENTS events. It resolves once
that has stayed untrue for CALM_BEFORE_RESOLVING, with `resolved_at` at the
moment the calm began; burning again in the meantime keeps it the same open
alert, so a burn that hovers at the threshold pages once, not every other
minute. Firing and resolving queue notifications in the outbox
(slo/webhooks.py), in the SLO's transaction; the due ones are sent after the
pass, and a failing webhook never stops the evaluator.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications import outbox
from slo import minutes, status, webhooks
from slo.models import SLO, Alert

logger = logging.getLogger(__name__)

# As Prometheus's keep_firing_for: five calm minutes, the Workbook's shortest
# short window, before an open alert counts as over.
CALM_BEFORE_RESOLVING = timedelta(minutes=5)


@dataclass
class PassReport:
    evaluated: int = 0
    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    sent: int = 0


def evaluate_all(*, now: datetime | None = None, slo_ids: list[int] | None = None) -> PassReport:
    """Evaluate every SLO (or those given), then send the due notifications."""
    now = now or timezone.now()
    report = PassReport()
    slos = SLO.objects.all() if slo_ids is None else SLO.objects.filter(pk__in=slo_ids)
    for slo in slos.order_by("pk"):
        try:
            evaluate(slo, now=now, report=report)
        except Exception:
            # One broken SLO must not keep the others from being evaluated.
            logger.exception("evaluating SLO %s failed", slo.pk)
    report.sent = outbox.send_due(now=now)
    return report


def evaluate(slo: SLO, *, now: datetime, report: PassReport | None = None) -> PassReport:
    report = report or PassReport()
    with transaction.atomic():
        # Claim this SLO for this pass; another worker that got there first skips it.
        claimed = SLO.objects.filter(pk=slo.pk, last_evaluated_at=slo.last_evaluated_at).update(
            last_evaluated_at=now
        )
        if not claimed:
            return report
        slo.last_evaluated_at = now
        if slo.backfilled_key != slo.selection_key:
            minutes.backfill(slo, now=now)
        _judge_tiers(slo, now=now, report=report)
    report.evaluated += 1
    return report


def _judge_tiers(slo: SLO, *, now: datetime, report: PassReport) -> None:
    """Fire, update and resolve the SLO's alerts from one status read.

    A first read of the tiers alone skips the window when nothing fires and
    nothing is open, as on most SLOs most minutes.

    The status's tiers have distinct long windows (maths.alert_windows), so a
    tier has at most one open alert, as `one_open_alert_per_tier` requires.
    """
    open_alerts = {alert.long_window: alert for alert in slo.alerts.open()}
    min_events = settings.MONOENV_SLO_MIN_EVENTS
    tiers = status.tier_states(slo, now=now, open_alerts=open_alerts)
    if not open_alerts and not any(tier.burning(min_events) for tier in tiers):
        return  # the common case: nothing fires or resolves, so the window is not read
    slo_status = status.status(slo, now=now, history=False, open_alerts=open_alerts)
    for tier in slo_status.tiers:
        burning = tier.burning(min_events)
        if tier.alert is not None:
            _follow(tier.alert, tier, burning=burning, slo_status=slo_status, now=now,
                    report=report)  # fmt: skip
        elif burning:
            _fire(slo, tier, slo_status, now=now, report=report)
    current = {tier.long_window for tier in slo_status.tiers}
    for long_window, alert in open_alerts.items():
        if long_window not in current:
            # The SLO's window changed and this tier no longer exists.
            _resolve(alert, slo_status, at=now, now=now, report=report)
            alert.save()


def _fire(slo: SLO, tier: status.TierState, slo_status: status.Status, *, now, report) -> None:
    alert = Alert.objects.create(
        slo=slo, severity=tier.severity, long_window=tier.long_window,
        short_window=tier.short_window, threshold=tier.threshold,
        long_burn_rate=tier.long_burn_rate, short_burn_rate=tier.short_burn_rate,
        budget_consumed_pct=slo_status.budget_consumed_pct, fired_at=now, last_evaluated_at=now,
    )  # fmt: skip
    webhooks.queue(alert, "firing", slo_status, now=now)
    report.fired.append(alert)


def _follow(alert: Alert, tier: status.TierState, *, burning: bool, slo_status, now, report):
    """Update an open alert's figures; resolve it once its tier has been calm long enough."""
    alert.long_burn_rate, alert.short_burn_rate = tier.long_burn_rate, tier.short_burn_rate
    alert.budget_consumed_pct, alert.last_evaluated_at = slo_status.budget_consumed_pct, now
    alert.calm_since = calm_since(alert.calm_since, burning=burning, now=now)
    if alert.calm_since is not None and now - alert.calm_since >= CALM_BEFORE_RESOLVING:
        _resolve(alert, slo_status, at=alert.calm_since, now=now, report=report)
    alert.save()


def calm_since(since: datetime | None, *, burning: bool, now: datetime) -> datetime | None:
    """When an open alert's tier stopped burning: None while it burns, else the first calm pass."""
    if burning:
        return None
    return since or now


def _resolve(alert: Alert, slo_status: status.Status, *, at: datetime, now: datetime, report):
    alert.resolved_at = at
    webhooks.queue(alert, "resolved", slo_status, now=now)
    report.resolved.append(alert)
